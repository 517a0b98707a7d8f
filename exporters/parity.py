"""Exported graphs must compute what the eager model computes.

Run at every export (a failure aborts it) and by the tests: ONNX Runtime on CPU and the
saved TorchScript module, each on a fresh random batch of a size other than the traced
one (which also proves the batch axis is dynamic), against eager PyTorch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from latentserve.exporters.formats import load_torchscript
from latentserve.exporters.plans import PARITY_TOLERANCE, GraphPlan

TOLERANCE = PARITY_TOLERANCE  # absolute plus relative: log-densities summed are large

PARITY_BATCH = 5


class ExportParityError(RuntimeError):
    """An exported graph disagrees with the eager model beyond the tolerance."""


def check_parity(
    plan: GraphPlan,
    onnx_path: Path,
    torchscript_path: Path,
    *,
    seed: int = 0,
    tolerance: float = TOLERANCE,
) -> dict[str, float]:
    """Max abs difference per format; raises ``ExportParityError`` past ``tolerance``
    (absolute plus relative)."""
    inputs = plan.example_inputs(PARITY_BATCH, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = _as_tuple(plan.module(*inputs))
        scripted = _as_tuple(load_torchscript(torchscript_path)(*inputs))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feeds = {spec.name: t.numpy() for spec, t in zip(plan.inputs, inputs, strict=True)}
    onnx_out = session.run([s.name for s in plan.outputs], feeds)
    actual = {
        "onnx": [torch.from_numpy(np.asarray(a)) for a in onnx_out],
        "torchscript": scripted,
    }
    diffs = {fmt: _max_diff(expected, out) for fmt, out in actual.items()}
    for fmt, diff in diffs.items():
        if not _within(expected, actual[fmt], tolerance):
            raise ExportParityError(
                f"{plan.role} graph ({fmt}) differs from eager PyTorch by {diff:.3g} "
                f"(tolerance {tolerance:g})"
            )
    return diffs


def _as_tuple(out: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


def _within(expected: tuple[torch.Tensor, ...], actual: list | tuple, tolerance: float) -> bool:
    if _max_diff(expected, actual) == float("inf"):
        return False
    return all(
        bool(((e - a).abs() <= tolerance * (1.0 + e.abs())).all())
        for e, a in zip(expected, actual, strict=True)
    )


def _max_diff(expected: tuple[torch.Tensor, ...], actual: list | tuple) -> float:
    if len(expected) != len(actual):
        return float("inf")
    worst = 0.0
    for e, a in zip(expected, actual, strict=True):
        if e.shape != a.shape:
            return float("inf")
        diff = (e.double() - a.double()).abs()
        worst = max(worst, float(diff.max()) if diff.numel() else 0.0)
    return worst
