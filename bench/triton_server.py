"""Triton (through PyTriton) serving a model's sampler graph as latentserve's V2 frontend does.

This runs in its own virtual environment (PyTriton pins numpy<2 and its own tritonclient),
so it imports nothing of latentserve: it reads the model version's ``manifest.json`` for
the sampler graph's file, opens it in ONNX Runtime and binds it with Triton's dynamic
batcher. The tensors mirror latentserve's ``sample`` method over the Open Inference
Protocol: inputs ``n`` (INT64, must be 1: a batched row is one image), ``seed`` (INT64) and
``temperature`` (FP32), each ``[1]`` per request; outputs ``images`` (UINT8 ``[1, C, H,
W]``) and ``seed`` (UINT64 ``[1]``). Noise is drawn per request from
``Generator(Philox(seed))``, as latentserve draws it. It prints ``ready`` once the model
serves, then serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import sysconfig
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import (
    DEFAULT_PROTECTED_ENDPOINTS,
    Triton,
    TritonConfig,
    TritonSecurityConfig,
)


def latest_version(repository: Path, model: str) -> Path:
    """The highest numbered version directory of ``model`` that holds a manifest."""
    versions = [p.parent for p in (repository / model).glob("*/manifest.json")]
    if not versions:
        raise SystemExit(f"no manifest.json under {repository / model}")
    return max(versions, key=lambda p: int(p.name) if p.name.isdigit() else -1)


def sampler_function(version_dir: Path, threads: int):
    """The batched infer function over the sampler graph, and the manifest it read."""
    manifest = json.loads((version_dir / "manifest.json").read_text())
    graph = manifest["graphs"]["sampler"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    path = version_dir / graph["files"]["onnx"]["path"]
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    latent = tuple(manifest["latent"]["shape"])

    @batch
    def infer(n: np.ndarray, seed: np.ndarray, temperature: np.ndarray) -> dict[str, np.ndarray]:
        if np.any(n != 1):
            raise ValueError("n must be 1 here: each batched row is one image")
        noise = np.stack(
            [
                np.random.Generator(np.random.Philox(int(s))).standard_normal(
                    latent, dtype=np.float32
                )
                for s in seed.reshape(-1)
            ]
        )
        feeds = {"noise": noise, "temperature": temperature.reshape(-1).astype(np.float32)}
        (image,) = session.run(["image"], feeds)
        pixels = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return {"images": pixels[:, None], "seed": seed.astype(np.uint64)}

    return infer, manifest


def use_this_libpython() -> None:
    """Make Triton's Python backend stub load this interpreter's libpython.

    The stub links ``libpython3.X.so`` by name; where the dynamic loader finds another
    build of the same minor version first (a system Python beside a pyenv one), the stub
    runs that C runtime over this interpreter's standard library and fails at start. The
    Triton server process and the stub inherit this environment.
    """
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir and any(Path(libdir).glob("libpython3*.so*")):
        current = os.environ.get("LD_LIBRARY_PATH")
        os.environ["LD_LIBRARY_PATH"] = f"{libdir}:{current}" if current else libdir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--model", default="vae-mnist")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-queue-delay-us", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads")
    args = parser.parse_args()
    use_this_libpython()
    infer, manifest = sampler_function(latest_version(args.repository, args.model), args.threads)
    image = manifest["image"]
    shape = (1, image["channels"], image["height"], image["width"])
    config = TritonConfig(
        http_address="127.0.0.1",
        grpc_address="127.0.0.1",
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # perf_analyzer reads the model's statistics (PyTriton restricts them to a token by
    # default); the other restricted endpoints stay restricted.
    open_to_perf_analyzer = [e for e in DEFAULT_PROTECTED_ENDPOINTS if e != "statistics"]
    security = TritonSecurityConfig(restricted_endpoints=open_to_perf_analyzer)
    with Triton(config=config, security_config=security) as triton:
        triton.bind(
            model_name=args.model,
            infer_func=infer,
            inputs=[
                Tensor(name="n", dtype=np.int64, shape=(1,)),
                Tensor(name="seed", dtype=np.int64, shape=(1,)),
                Tensor(name="temperature", dtype=np.float32, shape=(1,)),
            ],
            outputs=[
                Tensor(name="images", dtype=np.uint8, shape=shape),
                Tensor(name="seed", dtype=np.uint64, shape=(1,)),
            ],
            config=ModelConfig(
                max_batch_size=args.max_batch_size,
                batcher=DynamicBatcher(max_queue_delay_microseconds=args.max_queue_delay_us),
            ),
            strict=False,
        )
        triton.run()
        print("ready", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
