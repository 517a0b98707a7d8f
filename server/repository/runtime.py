"""One interface over an exported graph: ``run(dict[str, ndarray]) -> dict[str, ndarray]``.

ONNX Runtime is the default backend; TorchScript is a per-model opt-in and imports torch
only when selected, so the ONNX serving path stays torch-free.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np

from latentserve.manifest import GraphSpec, sha256_file

log = logging.getLogger(__name__)


class Runtime(Protocol):
    """What the batcher needs from a graph; fakes in tests implement the same surface."""

    backend: str
    providers: list[str]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class GraphIntegrityError(ValueError):
    """A graph file differs from the checksum its manifest recorded."""


@functools.cache
def cuda_device_present() -> bool:
    """True only if the CUDA driver initialises and reports a device.

    onnxruntime-gpu lists CUDAExecutionProvider even on machines without a GPU and then
    logs errors and falls back, so the provider list alone is no evidence of a device.
    """
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    if libcuda.cuInit(0) != 0 or libcuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return False
    return count.value > 0


def verify_checksum(path: Path, expected: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"graph file missing: {path}")
    actual = sha256_file(path)
    if actual != expected:
        raise GraphIntegrityError(f"{path}: sha256 {actual} does not match manifest {expected}")


class OnnxRuntime:
    """An ONNX Runtime session, on CUDA when a device really exists, else tuned CPU."""

    backend = "onnxruntime"

    def __init__(self, path: Path, intra_op_threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        # Spinning workers would steal the core the event loop needs between batches.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        wanted = ["CPUExecutionProvider"]
        if cuda_device_present() and "CUDAExecutionProvider" in ort.get_available_providers():
            wanted.insert(0, "CUDAExecutionProvider")
        self._session = ort.InferenceSession(str(path), sess_options=options, providers=wanted)
        self.providers = list(self._session.get_providers())
        self._output_names = [o.name for o in self._session.get_outputs()]
        # The CPU arena otherwise keeps the high-water mark of the largest batch ever run for
        # good; shrinking it after each run returns what that run grew (about 1% slower on
        # the VAE decoder, measured in bench/README.md "Memory under heavy requests").
        self._run_options = ort.RunOptions()
        self._run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self._session.run(None, inputs, self._run_options)
        return dict(zip(self._output_names, outputs, strict=True))


class TorchScriptRuntime:
    """A TorchScript module called with the manifest's inputs in order, on CPU."""

    backend = "torchscript"

    def __init__(self, path: Path, spec: GraphSpec, intra_op_threads: int = 1) -> None:
        import torch  # only here: selecting TorchScript is what makes torch a dependency

        torch.set_num_threads(intra_op_threads)
        self._torch = torch
        with warnings.catch_warnings():
            # The manifest chose TorchScript; torch's advice to migrate is for the exporter.
            warnings.simplefilter("ignore", DeprecationWarning)
            self._module = torch.jit.load(str(path), map_location="cpu").eval()
        self._input_names = [t.name for t in spec.inputs]
        self._output_names = [t.name for t in spec.outputs]
        self.providers = ["cpu"]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        args = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in self._input_names]
        with torch.inference_mode():
            out = self._module(*args)
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        if len(outs) != len(self._output_names):
            raise ValueError(
                f"module returned {len(outs)} outputs, the manifest lists {self._output_names}"
            )
        return {n: t.detach().cpu().numpy() for n, t in zip(self._output_names, outs, strict=True)}


def open_graph(version_dir: Path, spec: GraphSpec, backend: str, intra_op_threads: int) -> Runtime:
    """Verify a graph's checksum and open it with the chosen backend."""
    fmt = "onnx" if backend == "onnxruntime" else "torchscript"
    if fmt not in spec.files:
        raise ValueError(f"{version_dir}: no {fmt} file for backend {backend!r}")
    file = spec.files[fmt]
    path = version_dir / file.path
    verify_checksum(path, file.sha256)
    if backend == "onnxruntime":
        return OnnxRuntime(path, intra_op_threads)
    return TorchScriptRuntime(path, spec, intra_op_threads)
