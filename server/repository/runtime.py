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
def cuda_device_count() -> int:
    """CUDA devices the driver reports; 0 when it does not initialise.

    onnxruntime-gpu lists CUDAExecutionProvider even on machines without a GPU and then
    logs errors and falls back, so the provider list alone is no evidence of a device.
    """
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if libcuda.cuInit(0) != 0 or libcuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


def cuda_device_present() -> bool:
    """True only if the CUDA driver initialises and reports a device."""
    return cuda_device_count() > 0


def _cuda_usable() -> bool:
    import onnxruntime as ort

    return cuda_device_present() and "CUDAExecutionProvider" in ort.get_available_providers()


def instance_devices(instances: int | tuple[int, ...], backend: str) -> list[int | None]:
    """One entry per instance of a model: the CUDA device id its sessions run on, or None
    (CPU, or the default device when a GPU is used). Device ids are refused unless ONNX
    Runtime can put a session on each of them."""
    if isinstance(instances, int):
        return [None] * instances
    ids = list(instances)
    if backend != "onnxruntime":
        raise ValueError(
            f"instances = {ids} lists GPU device ids, but the {backend} backend runs on CPU: "
            f"give a count instead (instances = {len(ids)})"
        )
    count = cuda_device_count() if _cuda_usable() else 0
    if count == 0:
        raise ValueError(
            f"instances = {ids} lists GPU device ids, but no CUDA device is usable here: "
            f"on CPU give a count instead (instances = {len(ids)})"
        )
    missing = [d for d in ids if d >= count]
    if missing:
        raise ValueError(
            f"instances = {ids} names CUDA device(s) {missing}, but only ids 0..{count - 1} "
            "exist here"
        )
    return list(ids)


def verify_checksum(path: Path, expected: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"graph file missing: {path}")
    actual = sha256_file(path)
    if actual != expected:
        raise GraphIntegrityError(f"{path}: sha256 {actual} does not match manifest {expected}")


class OnnxRuntime:
    """An ONNX Runtime session, on CUDA when a device really exists, else tuned CPU.

    ``device_id`` picks the CUDA device (the provider's ``device_id``; one per instance of
    a model); without it the session takes the default device.
    """

    backend = "onnxruntime"

    def __init__(self, path: Path, intra_op_threads: int = 1, device_id: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        # Spinning workers would steal the core the event loop needs between batches.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        wanted: list[str | tuple[str, dict[str, int]]] = ["CPUExecutionProvider"]
        if _cuda_usable():
            wanted.insert(0, ("CUDAExecutionProvider", {"device_id": device_id or 0}))
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


def open_graph(
    version_dir: Path,
    spec: GraphSpec,
    backend: str,
    intra_op_threads: int,
    device_id: int | None = None,
) -> Runtime:
    """Verify a graph's checksum and open it with the chosen backend (on CUDA device
    ``device_id`` when given: ``instance_devices`` allows it only where one exists)."""
    fmt = "onnx" if backend == "onnxruntime" else "torchscript"
    if fmt not in spec.files:
        raise ValueError(f"{version_dir}: no {fmt} file for backend {backend!r}")
    file = spec.files[fmt]
    path = version_dir / file.path
    verify_checksum(path, file.sha256)
    if backend == "onnxruntime":
        return OnnxRuntime(path, intra_op_threads, device_id)
    return TorchScriptRuntime(path, spec, intra_op_threads)
