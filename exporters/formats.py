"""Writing one graph module to ONNX and TorchScript files.

ONNX uses the TorchScript-based exporter (``dynamo=False``): with the pinned torch it
exports these small conv nets in a fraction of a second, where the torch.export-based
one takes seconds per graph and adds nothing for static, control-flow-free modules.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from latentserve.manifest import TensorSpec

ONNX_OPSET = 17


@contextlib.contextmanager
def _torch_deprecations_silenced() -> Iterator[None]:
    """The pinned torch flags its TorchScript-era APIs as deprecated; they are still
    what produces (and loads) the formats the manifest promises."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def export_onnx(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    path: Path,
) -> None:
    """ONNX graph with the contract's names; every named dimension (``batch``, …) is dynamic."""
    dynamic_axes = {
        spec.name: {i: d for i, d in enumerate(spec.shape) if isinstance(d, str)}
        for spec in [*inputs, *outputs]
    }
    with _torch_deprecations_silenced():
        torch.onnx.export(
            module,
            example,
            str(path),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=[s.name for s in inputs],
            output_names=[s.name for s in outputs],
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )


def export_torchscript(module: nn.Module, example: tuple[torch.Tensor, ...], path: Path) -> None:
    """Traced TorchScript module (the graphs have no data-dependent control flow)."""
    with torch.no_grad(), _torch_deprecations_silenced():
        traced = torch.jit.trace(module, example, check_trace=True)
        torch.jit.save(traced, str(path))


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    """Load an exported TorchScript graph (for parity checks)."""
    with _torch_deprecations_silenced():
        return torch.jit.load(str(path))
