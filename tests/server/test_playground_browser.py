"""The playground at ``/`` in a real browser (Debian's Chromium driven by Playwright) against
a real server that requires a token, serving a tiny text-to-image model and a tiny VAE.

Screenshots (desktop and phone width) go to the folder named by
``LATENTSERVE_PLAYGROUND_SCREENSHOTS`` (read when the module is collected), or to a
temporary folder; ``make pictures`` takes the README's from here.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers.server_process import ServerFactory, ServerProcess
from helpers.tools import require_tool
from PIL import Image, ImageDraw
from playwright.sync_api import Browser, Error, Page, expect, sync_playwright
from tiny_runs import TinyRuns

pytestmark = pytest.mark.slow

TOKEN = "playground-secret"
SCREENSHOTS = os.environ.get("LATENTSERVE_PLAYGROUND_SCREENSHOTS")
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 60_000  # a loaded CI machine runs the tiny models slowly
expect.set_options(timeout=TIMEOUT_MS)

# The pixel spread (max - min over every channel) of a loaded <img>: 0 means blank.
PIXEL_SPREAD = """img => {
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(img, 0, 0);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let low = 255, high = 0;
  for (let i = 0; i < data.length; i += 4) {
    for (let c = 0; c < 3; c++) {
      low = Math.min(low, data[i + c]);
      high = Math.max(high, data[i + c]);
    }
  }
  return canvas.width > 0 ? high - low : 0;
}"""

# Records every preview the page shows, with its pixel spread, and whether the final images
# were on the page yet: previews come and go faster than a poll could catch them.
RECORD_PREVIEWS = """() => {
  window.previews = [];
  window.decoded = [];
  const spread = PIXEL_SPREAD;
  new MutationObserver(() => {
    for (const img of document.querySelectorAll("#preview img")) {
      const preview = {
        step: Number(document.querySelector("#preview").dataset.step),
        resultsShown: document.querySelectorAll("#results .result").length,
      };
      window.previews.push(preview);
      window.decoded.push(img.decode().then(() => { preview.spread = spread(img); }));
    }
  }).observe(document.querySelector("#preview"), { childList: true });
}""".replace("PIXEL_SPREAD", PIXEL_SPREAD)
PREVIEWS = "async () => { await Promise.all(window.decoded); return window.previews; }"


@pytest.fixture(scope="module")
def server(
    start_server: ServerFactory, tiny_runs: TinyRuns, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    models = [("ldm-tiny", "ldm-tiny", "1", 0), ("vae-tiny", "vae-tiny", "1", 0)]
    repository = tiny_runs.export(tmp_path_factory.mktemp("playground_repository"), models)
    tokens = tmp_path_factory.mktemp("playground_tokens") / "tokens"
    tokens.write_text(f"{TOKEN}\n")
    args = ["--auth-tokens-file", str(tokens)]
    with start_server(repository, "playground", extra_args=args) as process:
        yield process


@pytest.fixture(scope="module")
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.http_url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for the module; skipped (failed under CI) where it cannot start."""
    chromium = require_tool("chromium", "make test-tools installs Debian's chromium")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        except Error as error:
            message = f"Chromium cannot start: {str(error).splitlines()[0]}"
            if os.environ.get("CI"):
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"playground screenshots: {folder}")
    return folder


def open_playground(browser: Browser, server: ServerProcess, viewport: dict) -> Page:
    """A fresh page (empty sessionStorage) with the token entered and the models listed."""
    page = browser.new_context(viewport=viewport).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server.http_url + "/")
    page.fill("#token", TOKEN)
    page.press("#token", "Enter")
    expect(page.locator("#model option")).to_have_count(2)
    return page


@pytest.fixture
def page(browser: Browser, server: ServerProcess) -> Iterator[Page]:
    page = open_playground(browser, server, DESKTOP)
    yield page
    page.context.close()


def spreads(page: Page, selector: str) -> list[int]:
    return [img.evaluate(PIXEL_SPREAD) for img in page.locator(selector).element_handles()]


def test_the_page_and_its_files_load_without_a_token_but_the_api_needs_one(
    server: ServerProcess,
) -> None:
    with httpx.Client(base_url=server.http_url, timeout=30) as http:
        page = http.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert http.get("/playground/app.js").headers["content-type"].startswith("text/javascript")
        assert http.get("/playground/nothing.js").status_code == 404
        assert http.get("/v1/models").status_code == 401


def test_the_page_asks_for_the_token_then_lists_the_models(
    browser: Browser, server: ServerProcess
) -> None:
    page = browser.new_context(viewport=DESKTOP).new_page()
    try:
        page.goto(server.http_url + "/")
        expect(page.locator("#token-error")).to_contain_text("authentication required")
        expect(page.locator("#token")).to_be_focused()
        page.keyboard.type(TOKEN)
        page.keyboard.press("Enter")
        expect(page.locator("#model option")).to_have_text(["ldm-tiny@1 · ldm", "vae-tiny@1 · vae"])
        expect(page.locator("#token-error")).to_be_hidden()
        assert page.evaluate("sessionStorage.getItem('latentserve.token')") == TOKEN
    finally:
        page.context.close()


def test_a_prompt_shows_previews_then_images_that_are_not_blank(
    page: Page, screenshots: Path
) -> None:
    expect(page.locator("#model")).to_have_value("ldm-tiny@1")
    page.evaluate(RECORD_PREVIEWS)
    page.fill("#generate-form-prompt", "a handwritten 7")
    page.fill("#generate-form-seed", "18446744073709551615")  # the largest: kept exact
    page.fill("#generate-form-steps", "40")
    page.fill("#generate-form-preview_every", "1")
    page.press("#generate-form-prompt", "Enter")
    expect(page.locator("#job")).to_have_attribute("data-state", "done")
    results = page.locator("#results .result").first
    expect(results.locator("h3")).to_contain_text("seed 18446744073709551615")
    expect(results.locator("img")).to_have_count(4)
    assert all(spread > 0 for spread in spreads(page, "#results .result img"))
    previews = page.evaluate(PREVIEWS)
    assert previews, "no preview was shown"
    assert all(p["spread"] > 0 and p["resultsShown"] == 0 for p in previews), previews
    assert min(p["step"] for p in previews) < 40
    assert results.locator("a[download]").first.get_attribute("download") == (
        "ldm-tiny-seed18446744073709551615-0.png"
    )
    with page.expect_download() as grid:
        results.get_by_role("button", name="Download grid").click()
    png = Image.open(grid.value.path())
    assert png.size == (2 * 84 + 2, 2 * 84 + 2)  # 2x2 tiles of 28 px scaled 3x, 2 px apart
    page.screenshot(path=screenshots / "playground-desktop.png", full_page=True)


def test_cancel_stops_a_long_job(page: Page, api: httpx.Client) -> None:
    page.fill("#generate-form-prompt", "a handwritten 3")
    page.fill("#generate-form-n", "64")
    page.fill("#generate-form-steps", "1000")
    page.fill("#generate-form-preview_every", "0")
    page.get_by_role("button", name="Generate from prompt").click()
    expect(page.locator("#job")).to_have_attribute("data-state", "running")
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#job")).to_have_attribute("data-state", "cancelled")
    expect(page.locator("#job-status")).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
    job = api.get(f"/v1/jobs/{page.locator('#job').get_attribute('data-job-id')}").json()
    assert job["state"] == "cancelled" and job["step"] < 1000
    assert page.locator("#results .result").count() == 0


def test_a_bad_field_shows_the_servers_error_beside_it(page: Page) -> None:
    page.fill("#generate-form-prompt", "a handwritten 1")
    page.fill("#generate-form-sampler", "no_such_sampler")
    page.press("#generate-form-sampler", "Enter")
    error = page.locator('#generate-form [data-field="sampler"] .error')
    expect(error).to_be_visible()
    expect(error).to_contain_text("no_such_sampler")
    expect(page.locator("#generate-form-sampler")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#generate-form-sampler")).to_be_focused()
    expect(page.locator('#generate-form [data-field="steps"] .error')).to_be_hidden()


def a_drawn_digit() -> bytes:
    """An RGBA PNG twice the model's size: the page must make it 28x28 grey to send it."""
    image = Image.new("RGBA", (56, 56), (0, 0, 0, 255))
    ImageDraw.Draw(image).line([(16, 10), (40, 10), (24, 48)], fill=(255, 255, 255, 255), width=6)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_dropped_image_is_reconstructed_encoded_and_scored(page: Page) -> None:
    page.select_option("#model", "vae-tiny@1")
    page.get_by_label("Encode / score an image").check()
    digit = {"name": "seven.png", "mimeType": "image/png", "buffer": a_drawn_digit()}
    page.set_input_files("#image-form-images", digit)
    page.get_by_role("button", name="Reconstruct").click()
    reconstruction = page.locator("#results .result.reconstruction")
    expect(reconstruction.locator("img")).to_have_count(2)
    assert all(spread > 0 for spread in spreads(page, "#results .result.reconstruction img"))
    page.get_by_role("button", name="Encode", exact=True).click()
    expect(page.locator("#results .latents pre")).to_contain_text("latent: shape [4]")
    page.get_by_role("button", name="Log-prob").click()
    expect(page.locator("#results .log-prob pre")).to_contain_text("bits/dim (elbo")
    bits = float(re.match(r"([\d.]+) bits/dim", page.inner_text("#results .log-prob pre"))[1])
    assert 0 < bits < 64


def test_a_prompt_can_start_from_a_chosen_image(page: Page) -> None:
    page.fill("#generate-form-prompt", "a handwritten 7")
    page.fill("#generate-form-n", "1")
    page.fill("#generate-form-steps", "10")
    page.fill("#generate-form-strength", "0.5")
    digit = {"name": "seven.png", "mimeType": "image/png", "buffer": a_drawn_digit()}
    page.set_input_files("#generate-form-image", digit)
    page.press("#generate-form-strength", "Enter")
    expect(page.locator("#job")).to_have_attribute("data-state", "done")
    expect(page.locator("#results .result img")).to_have_count(1)
    assert spreads(page, "#results .result img")[0] > 0


def test_interpolation_is_a_strip_of_frames_between_two_seeds(page: Page) -> None:
    page.select_option("#model", "vae-tiny@1")
    page.get_by_label("Interpolate", exact=True).check()
    page.fill("#interpolate-form-seed_a", "1")
    page.fill("#interpolate-form-seed_b", "2")
    page.fill("#interpolate-form-frames", "5")
    page.press("#interpolate-form-frames", "Enter")
    strip = page.locator("#results .result .grid.strip")
    expect(strip.locator("img")).to_have_count(5)
    expect(page.locator("#results .result h3").first).to_contain_text("seeds 1 → 2 · 5 frames")
    assert all(spread > 0 for spread in spreads(page, "#results .result .strip img"))


def test_at_phone_width_nothing_overflows_and_a_sample_can_be_made(
    browser: Browser, server: ServerProcess, screenshots: Path
) -> None:
    page = open_playground(browser, server, PHONE)
    try:
        # By keyboard: from the model list, Tab reaches the mode, then the prompt.
        page.focus("#model")
        page.keyboard.press("Tab")
        expect(page.get_by_label("Generate", exact=True)).to_be_focused()
        page.keyboard.press("Tab")
        expect(page.locator("#generate-form-prompt")).to_be_focused()
        page.keyboard.type("a handwritten 0")
        page.fill("#generate-form-seed", "5")
        page.fill("#generate-form-steps", "20")
        page.focus("#generate-form-prompt")
        page.keyboard.press("Enter")
        expect(page.locator("#job")).to_have_attribute("data-state", "done")
        widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], widths
        page.screenshot(path=screenshots / "playground-phone.png", full_page=True)
    finally:
        page.context.close()
