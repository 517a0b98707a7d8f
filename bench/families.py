"""Benchmark: sample throughput of each model family through the server vs the same graphs
driven directly, at n = 1, 16 and 64 images per request, measured in one run.

"Direct" runs the model's exported ONNX graphs in this process with no server, batcher or
transport: one sampler call for one-shot models (VAE, NVAE, Glow) and GAN generators (with
every input the server feeds them: z, ψ, and for style-based ones the layer noise and an
unmixed second latent), or for autoregressive
priors one step-graph call per code position followed by the decoder, the loop the server
runs. "Server" sends the same requests one after another over gRPC to a real server. The
ratio (server / direct) is the serving overhead at that request size. Medians of
``--repeats`` measurements of ``--duration`` seconds each.

    python bench/families.py --repository runs/families-repository
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort
from latentserve.clients import GrpcClient
from latentserve.clients.local import LocalServer
from latentserve.server.pipelines.autoregressive import categorical

from latentserve.manifest import Manifest


def session(version_dir: Path, manifest: Manifest, role: str, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    path = version_dir / manifest.graphs[role].files["onnx"].path
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def direct_sampler(version_dir: Path, threads: int) -> Callable[[int, np.random.Generator], None]:
    """A function that draws ``n`` images straight from the graphs, as the server would."""
    manifest = Manifest.load(version_dir)
    if manifest.pipeline == "latent_decoder":
        sampler = session(version_dir, manifest, "sampler", threads)

        def one_shot(n: int, rng: np.random.Generator) -> None:
            noise = rng.standard_normal((n, *manifest.latent.shape), dtype=np.float32)
            sampler.run(None, {"noise": noise, "temperature": np.ones(n, np.float32)})

        return one_shot
    if manifest.pipeline == "gan":
        generator = session(version_dir, manifest, "sampler", threads)

        def gan(n: int, rng: np.random.Generator) -> None:
            generator.run(None, gan_feeds(manifest, n, rng))

        return gan
    priors = {c.prior: session(version_dir, manifest, c.prior, threads) for c in manifest.codes}
    decoder = session(version_dir, manifest, "decoder", threads)

    def autoregressive(n: int, rng: np.random.Generator) -> None:
        codes: dict[str, np.ndarray] = {}
        for code_map in manifest.codes:
            current = np.zeros((n, code_map.height, code_map.width), np.int64)
            feeds = {name: codes[name] for name in code_map.conditions}
            for position in range(code_map.height * code_map.width):
                row, col = divmod(position, code_map.width)
                feeds[code_map.name] = current
                if code_map.step == "position":
                    feeds["position"] = np.full(n, position, np.int64)
                    logits = priors[code_map.prior].run(["logits"], feeds)[0]
                else:
                    logits = priors[code_map.prior].run(["logits"], feeds)[0][:, :, row, col]
                current[:, row, col] = categorical(logits, 1.0, rng.random(n))
            codes[code_map.name] = current
        decoder.run(None, codes)

    return autoregressive


def gan_feeds(manifest: Manifest, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """What the server feeds a generator for an unmixed sample at ψ = 1."""
    z = rng.standard_normal((n, *manifest.latent.shape), dtype=np.float32)
    feeds = {"z": z, "truncation": np.ones(n, np.float32)}
    styles = manifest.generator.style_layers if manifest.generator else 0
    if styles:
        [noise] = [t for t in manifest.graphs["sampler"].inputs if t.name == "layer_noise"]
        feeds["layer_noise"] = rng.standard_normal((n, int(noise.shape[1])), dtype=np.float32)
        feeds["mix_z"] = z
        feeds["mix_layer"] = np.full(n, styles, np.int64)
    return feeds


def images_per_s(call: Callable[[], None], n: int, duration: float) -> float:
    """n / median seconds per call, over back-to-back calls for ``duration`` seconds."""
    call()  # warm-up
    times = []
    start = time.perf_counter()
    while not times or time.perf_counter() - start < duration:
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return n / statistics.median(times)


def benchmark(args: argparse.Namespace, target: str) -> list[dict]:
    rows = []
    with GrpcClient(target, timeout=600) as client:
        models = [m for m in client.list_models() if "sample" in m.capabilities]
        if args.models:
            models = [m for m in models if m.name in args.models]
        for info in models:
            version_dir = args.repository / info.name / info.version
            direct = direct_sampler(version_dir, args.threads)
            rng = np.random.default_rng(0)
            for n in args.sizes:
                direct_runs, server_runs = [], []
                for _ in range(args.repeats):
                    from_graphs = partial(direct, n, rng)
                    from_server = partial(client.sample, info.name, n, seed=1)
                    direct_runs.append(images_per_s(from_graphs, n, args.duration))
                    server_runs.append(images_per_s(from_server, n, args.duration))
                row = {
                    "model": f"{info.name}@{info.version}",
                    "family": info.family,
                    "n": n,
                    "direct_images_per_s": statistics.median(direct_runs),
                    "server_images_per_s": statistics.median(server_runs),
                    "direct_runs": [round(x, 1) for x in direct_runs],
                    "server_runs": [round(x, 1) for x in server_runs],
                }
                row["ratio"] = row["server_images_per_s"] / row["direct_images_per_s"]
                rows.append(row)
                print(
                    f"{row['model']:>20} n={n:<3} direct {row['direct_images_per_s']:9.1f} img/s "
                    f"server {row['server_images_per_s']:9.1f} img/s  ratio {row['ratio']:.2f}",
                    flush=True,
                )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| model | family | n | direct img/s | server (gRPC) img/s | server / direct |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['family']} | {r['n']} | {r['direct_images_per_s']:.1f} "
            f"| {r['server_images_per_s']:.1f} | {r['ratio']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--models", nargs="*", help="names to measure (default: every sampler)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument(
        "--threads",
        type=int,
        default=max(1, (os.cpu_count() or 2) - 1),
        help="ONNX Runtime threads for the direct graphs (the server's default)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument("--table", type=Path, help="also write a Markdown table")
    args = parser.parse_args()
    with LocalServer(args.repository) as server:
        rows = benchmark(args, server.grpc_target)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    if args.table:
        args.table.write_text(table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()
