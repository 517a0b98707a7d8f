"""The ceiling: ONNX Runtime on the very graph the server runs, with no server around it.

It reads the model's manifest (the same file the server reads), builds inputs from the
graph's declared I/O (noise from the prior, temperature 1) and times back-to-back calls.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from latentserve.manifest import GraphSpec, Manifest


def load_graph(
    version_dir: Path, providers: list[str], threads: int = 0
) -> tuple[ort.InferenceSession, GraphSpec, str]:
    """The graph ``sample`` runs (the sampler if the model has one, else the decoder), on
    the execution providers the server reports; ``threads`` 0 is ONNX Runtime's default.
    """
    manifest = Manifest.load(version_dir)
    role = "sampler" if "sampler" in manifest.graphs else "decoder"
    spec = manifest.graphs[role]
    if "onnx" not in spec.files:
        raise ValueError(f"{manifest.name}: the {role} graph has no ONNX file")
    path = version_dir / spec.files["onnx"].path
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=providers)
    return session, spec, role


def make_inputs(spec: GraphSpec, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Inputs for ``batch`` items: named dimensions become ``batch``; temperature is 1."""
    feeds = {}
    for tensor in spec.inputs:
        shape = [batch if isinstance(d, str) else d for d in tensor.shape]
        if tensor.name == "temperature":
            feeds[tensor.name] = np.ones(shape, dtype=tensor.dtype)
        else:
            feeds[tensor.name] = rng.standard_normal(shape).astype(tensor.dtype)
    return feeds


def measure(session: ort.InferenceSession, spec: GraphSpec, batch: int, duration: float) -> dict:
    """Images/s and per-call latency of back-to-back ``run`` calls at one batch size."""
    feeds = make_inputs(spec, batch, np.random.default_rng(0))
    for _ in range(3):
        session.run(None, feeds)
    latencies = []
    start = time.perf_counter()
    while (now := time.perf_counter()) - start < duration:
        session.run(None, feeds)
        latencies.append(time.perf_counter() - now)
    elapsed = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000.0
    threads = session.get_session_options().intra_op_num_threads
    return {
        "client": f"onnxruntime in-process, {threads or 'auto'} threads",
        "requests": len(latencies),
        "errors": 0,
        "images_per_s": len(latencies) * batch / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "ms_per_image": float(np.median(ms)) / batch,
    }
