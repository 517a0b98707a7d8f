"""``make pictures``: the documentation's images, drawn by a real server from a model
repository with fixed seeds, and the benchmark plots of the runs found in ``out/``.

Everything goes through the public API (the SDK over loopback), so the pictures show what a
client gets. What the repository lacks (a family without a model, no text-to-image model,
no benchmark JSON, no playground) is skipped with a note rather than faked.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

import httpx
from latentserve.clients import connect_async
from latentserve.clients.grid import make_grid
from latentserve.clients.local import LocalServer
from latentserve.clients.results import ModelInfo
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import plots  # noqa: E402  (bench/plots.py)

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
PROMPTS = [f"a handwritten {word}" for word in DIGITS]
SEEDS = (0, 1, 2)
STEPS = 25  # DDIM steps of the text-to-image pictures: plenty for 28x28 digits
SCALE = 3  # upscale factor (nearest): 28x28 digits become 84x84 tiles
# The benchmark JSON files `make bench`, `make bench-diffusion` and `make bench-t2i` write,
# and the picture each becomes.
BENCH_PLOTS = {
    "bench.json": ("bench-load.png", plots.plot_load),
    "bench-diffusion.json": ("bench-diffusion.png", plots.plot_diffusion),
    "bench-t2i.json": ("bench-t2i.png", plots.plot_diffusion),
}
# Interpolation settings per family: a prior scaled by 0.7 walks through typical digits.
INTERPOLATE_PARAMS: dict[str, dict[str, object]] = {
    "vae": {"temperature": 0.7},
    "nvae": {"temperature": 0.7},
    "glow": {"temperature": 0.7},
    "dcgan": {"truncation": 0.7},
    "stylegan2": {"truncation": 0.7},
}
# Sample settings per family for its grid (what makes a family look like itself). The GANs
# draw at truncation 1: on these models a smaller psi gives thinner, more alike strokes and
# fewer confidently read digits (docs/quality.md), not more typical ones.
FAMILY_PARAMS: dict[str, dict[str, object]] = {
    "ddpm": {"steps": 25, "sampler": "ddim"},
    "vqvae": {"temperature": 0.9},
    "vqvae2": {"temperature": 0.9},
}


def note(message: str) -> None:
    print(f"note: {message}", flush=True)


def save(image: Image.Image, path: Path, scale: int = SCALE) -> None:
    """Upscale (nearest, so pixels stay crisp) and write a small optimised PNG."""
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    image.save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)", flush=True)


def first_with(models: Sequence[ModelInfo], capability: str, prefer: str) -> ModelInfo | None:
    """The model called ``prefer`` if it has ``capability``, else the first that has it."""
    able = [m for m in models if capability in m.capabilities]
    return next((m for m in able if m.name == prefer), able[0] if able else None)


def one_model_per_family(models: Sequence[ModelInfo]) -> dict[str, ModelInfo]:
    """The model whose grid stands for each family: an MNIST one where the family has one
    (the captions and the text-to-image prompt speak of digits), else the first by name."""
    by_family: dict[str, ModelInfo] = {}
    for model in sorted(models, key=lambda m: (not m.name.endswith("-mnist"), m.name)):
        by_family.setdefault(model.family, model)
    return by_family


async def text_to_image_strip(client, model: ModelInfo, out: Path) -> None:
    """One column per prompt, one row per seed; the jobs run at once, sharing batches."""
    jobs = [
        client.text_to_image(model.name, prompt, n=1, seed=seed, steps=STEPS)
        for seed in SEEDS
        for prompt in PROMPTS
    ]
    results = await asyncio.gather(*jobs)
    images = [result.images[0] for result in results]
    save(make_grid(images, columns=len(PROMPTS)), out / "text-to-image.png")


async def interpolation_strip(client, model: ModelInfo, out: Path) -> None:
    """Three walks between two seeds, ten frames each, one per row."""
    pairs = ((1, 2), (3, 4), (5, 6))
    params = INTERPOLATE_PARAMS.get(model.family, {})
    walks = (client.interpolate(model.name, a, b, 10, **params) for a, b in pairs)
    results = await asyncio.gather(*walks)
    images = [image for result in results for image in result.images]
    save(make_grid(images, columns=10), out / "interpolation.png")


async def family_grid(client, model: ModelInfo, out: Path) -> None:
    """Sixteen images of one request with seed 0 (a text-to-image model: "a handwritten
    three"), with the family's telling settings (FAMILY_PARAMS)."""
    if "sample" in model.capabilities:
        params = FAMILY_PARAMS.get(model.family, {})
        images = (await client.sample(model.name, n=16, seed=0, **params)).images
    elif "text_to_image" in model.capabilities:
        result = await client.text_to_image(model.name, PROMPTS[3], n=16, seed=0, steps=STEPS)
        images = result.images
    else:
        note(f"{model.name} ({model.family}) neither samples nor draws from text: no grid")
        return
    save(make_grid(images, columns=8), out / f"family-{model.family}.png")


def playground_screenshot(url: str, out: Path) -> None:
    """docs/images/playground.png: the playground at ``/`` in Chromium (driven by
    Playwright) after drawing "a handwritten seven" from the text-to-image model; skipped
    with a note where there is no playground, Playwright or Chromium."""
    page_answer = httpx.get(f"{url}/", timeout=30)
    if page_answer.status_code != 200 or "html" not in page_answer.headers.get("content-type", ""):
        note(f"no playground at {url}/ (HTTP {page_answer.status_code}): playground.png not made")
        return
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if chromium is None:
        note("Playwright or Chromium missing (make test-tools): playground.png not made")
        return
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 760})
            page.set_default_timeout(120_000)
            page.goto(f"{url}/")
            page.wait_for_selector("#model option", state="attached")
            models = page.eval_on_selector_all("#model option", "os => os.map(o => o.value)")
            text_model = next((m for m in models if m.startswith("ldm-mnist@")), None)
            if text_model is not None:
                page.select_option("#model", text_model)
                page.fill("#generate-form-prompt", PROMPTS[7])
                page.fill("#generate-form-seed", "0")
                page.fill("#generate-form-steps", str(STEPS))
                page.press("#generate-form-prompt", "Enter")
                page.wait_for_selector('#job[data-state="done"]')
            page.screenshot(path=out / "playground.png")
        finally:
            browser.close()
    shot = Image.open(out / "playground.png")
    shot.convert("RGB").quantize(colors=64).save(out / "playground.png", optimize=True)
    size = (out / "playground.png").stat().st_size // 1024
    print(f"wrote {out / 'playground.png'} ({size} KB)", flush=True)


# bench/README.md's section of `make bench` figures taken on a quiet machine: each model's
# name in bold, then bench/run.py's printed table in a code block.
PUBLISHED_SECTION = "### `make bench` / `make bench-wide` with the current defaults"


def bench_plots(bench_dir: Path, out: Path, bench_readme: Path) -> None:
    for source, (name, plot) in BENCH_PLOTS.items():
        path = bench_dir / source
        if path.exists():
            plot(path, out / name)
            print(f"wrote {out / name} from {path}", flush=True)
        elif source == "bench.json":
            published_load_plots(bench_readme, out)
        else:
            note(f"{path} not found (its make bench target writes it): {name} not made")


def published_load_plots(readme: Path, out: Path) -> None:
    """Without a fresh out/bench.json, plot the quiet-machine tables bench/README.md
    publishes (bench-load.png for vae-mnist, bench-load-wide.png for vae-mnist-wide)."""
    section = readme.read_text().split(PUBLISHED_SECTION, 1)[-1]
    tables = re.findall(r"\*\*(vae-mnist(?:-wide)?)\*\*.*?```\n(.*?)```", section, re.S)
    if not tables:
        note(f"no out/bench.json and no published table in {readme}: bench-load.png not made")
        return
    for model, table in tables[:2]:
        name = "bench-load.png" if model == "vae-mnist" else "bench-load-wide.png"
        caption = f"{model}, published in bench/README.md (make bench, quiet 2-core machine)"
        plots.plot_load(plots.parse_run_report(table), out / name, note=caption)
        print(f"wrote {out / name} from {readme} ({model})", flush=True)


def builtin_families() -> set[str]:
    """The families the built-in configs train (read from their TOML, not imported: the
    training code needs torch)."""
    configs = (ROOT / "latentserve" / "configs").glob("*.toml")
    return {tomllib.loads(path.read_text())["family"] for path in configs}


async def draw(url: str, out: Path, families: set[str] | None) -> None:
    async with connect_async(url, timeout=600) as client:
        models = await client.list_models()
        print("models: " + ", ".join(f"{m.name} ({m.family})" for m in models), flush=True)
        text_model = first_with(models, "text_to_image", prefer="ldm-mnist")
        if text_model is None:
            note("no text-to-image model: text-to-image.png not made")
        else:
            await text_to_image_strip(client, text_model, out)
        walker = first_with(models, "interpolate", prefer="vae-mnist")
        if walker is None:
            note("no model that interpolates: interpolation.png not made")
        else:
            await interpolation_strip(client, walker, out)
        by_family = one_model_per_family(models)
        for family in sorted(families or set(by_family) | builtin_families()):
            if family in by_family:
                await family_grid(client, by_family[family], out)
            else:
                note(f"no {family} model in the repository: family-{family}.png not made")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--bench-dir", type=Path, default=Path("out"))
    parser.add_argument(
        "--families",
        nargs="*",
        help="families to draw a grid for (default: every family of the built-in configs; "
        "one without a model in the repository is skipped with a note)",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    bench_plots(args.bench_dir, args.out, ROOT / "bench" / "README.md")
    with LocalServer(args.repository) as server:
        print(f"serving {args.repository} at {server.http_url}", flush=True)
        asyncio.run(draw(server.http_url, args.out, set(args.families or ()) or None))
        playground_screenshot(server.http_url, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
