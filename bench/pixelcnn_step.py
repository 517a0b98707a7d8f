"""Benchmark: the pixel-level PixelCNN's position step graph vs recomputing the whole
image per pixel, measured in one run.

The run is exported twice into a temporary repository: ``pixelcnn-position`` as the
recipe exports it (each step computes the rows the pixel sees and its logits alone), and
``pixelcnn-map`` with the same weights whose prior graph is the whole network (every
pixel's 256 logits, recomputed at each of the 784 steps; how the VQ priors step). Both
are timed two ways: the raw ONNX Runtime step call at batch 1 and 16, and whole sample
requests over gRPC to one real server at n = 1 and 16 (784 steps each, batched by the
server). Medians of ``--repeats``; the speed-up is map time / position time.

    python bench/pixelcnn_step.py --run runs/pixelcnn-mnist
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from latentserve.clients import GrpcClient
from latentserve.clients.local import LocalServer
from latentserve.exporters.export import export_run
from latentserve.exporters.formats import export_onnx, export_torchscript
from latentserve.training.checkpoint import load_run
from timing import median_seconds

from latentserve.manifest import GraphFile, GraphSpec, Manifest, TensorSpec, sha256_file


def map_variant(position_dir: Path, run: Path, target: Path) -> Path:
    """A copy of ``position_dir`` whose prior graph is the whole network (step = map)."""
    import torch

    shutil.copytree(position_dir, target)
    manifest = Manifest.load(target)
    [code_map] = manifest.codes
    model = load_run(run).model.eval()
    h, w, k = code_map.height, code_map.width, code_map.codebook_size
    pixels = TensorSpec(name=code_map.name, dtype="int64", shape=["batch", h, w])
    logits = TensorSpec(name="logits", dtype="float32", shape=["batch", k, h, w])
    example = (torch.randint(0, k, (2, h, w)),)
    export_onnx(model.net, example, [pixels], [logits], target / "prior.onnx")
    export_torchscript(model.net, example, target / "prior.pt")
    files = {
        fmt: GraphFile(path=name, sha256=sha256_file(target / name))
        for fmt, name in (("onnx", "prior.onnx"), ("torchscript", "prior.pt"))
    }
    graphs = dict(manifest.graphs)
    graphs["prior"] = GraphSpec(inputs=[pixels], outputs=[logits], files=files)
    changed = manifest.model_copy(
        update={
            "name": target.parent.name,
            "codes": [code_map.model_copy(update={"step": "map"})],
            "graphs": graphs,
        }
    )
    Manifest.model_validate(changed.model_dump()).save(target)
    return target


def raw_step(version_dir: Path, batch: int, repeats: int, threads: int) -> float:
    """Median seconds of one prior step call at ``batch`` (the middle pixel)."""
    manifest = Manifest.load(version_dir)
    [code_map] = manifest.codes
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        str(version_dir / "prior.onnx"), options, providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(0)
    feeds = {code_map.name: rng.integers(0, 256, (batch, code_map.height, code_map.width))}
    if code_map.step == "position":
        feeds["position"] = np.full(batch, code_map.height * code_map.width // 2, np.int64)
    return median_seconds(lambda: session.run(["logits"], feeds), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a trained pixelcnn run folder")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=5, help="sample requests per median")
    parser.add_argument("--step-repeats", type=int, default=200, help="raw step calls per median")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (raw)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        repository = Path(tmp)
        position = export_run(args.run, repository, "pixelcnn-position", version="1")
        variants = {
            "position": position,
            "map": map_variant(position, args.run, repository / "pixelcnn-map" / "1"),
        }
        rows = []
        for n in args.sizes:
            raw = {v: raw_step(d, n, args.step_repeats, args.threads) for v, d in variants.items()}
            rows.append({"measure": "raw step", "n": n, **raw})
        with LocalServer(repository) as server, GrpcClient(server.grpc_target, timeout=3600) as c:
            for n in args.sizes:
                served = {
                    v: median_seconds(
                        lambda v=v, n=n: c.sample(f"pixelcnn-{v}", n, seed=1), args.repeats
                    )
                    for v in variants
                }
                rows.append({"measure": "sample over gRPC", "n": n, **served})
    print("| measure | n | whole image per step (s) | position step (s) | speed-up |")
    print("|---|---|---|---|---|")
    for row in rows:
        row["speedup"] = row["map"] / row["position"]
        print(
            f"| {row['measure']} | {row['n']} | {row['map']:.5f} | {row['position']:.5f} "
            f"| {row['speedup']:.1f}x |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
