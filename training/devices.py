"""Where a training run computes, and in which precision.

``--device`` picks the device (``auto``: the GPU when one is present) and ``--precision``
the arithmetic of the forward passes: ``bf16`` and ``fp16`` run them under
``torch.autocast`` (weights, optimiser state and backward stay float32, as mixed
precision should); ``fp16`` also scales the loss with a ``GradScaler``, because its
small exponent range would flush small gradients to zero, which bfloat16's does not.
The scaler's state is not checkpointed: a resumed fp16 run starts from the initial scale,
which the scaler lowers again within a few steps if it overflows (those steps are skipped).

Families draw their noise as ``torch.randn(shape, generator=g)`` without naming a
device. ``on_device`` makes that land beside the weights: it sets the default device for
the step and the step's generator lives on that device, so no family needs to know where
it runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch

Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def parse_device(spec: str, local_rank: int | None = None) -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` as a device that exists here.

    Under ``torchrun`` (``local_rank`` given) ``auto`` and ``cuda`` mean this process's
    own GPU, ``cuda:LOCAL_RANK``; naming one GPU for every process is refused.
    """
    spec = spec.strip().lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    kind, _, index_text = spec.partition(":")
    if kind != "cuda" or (index_text and not index_text.isdigit()):
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {spec!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"--device {spec}: no CUDA GPU is available here (use cpu or auto)")
    if local_rank is not None:
        if index_text:
            raise ValueError(
                f"--device {spec}: under torchrun each process uses cuda:LOCAL_RANK; "
                "give --device cuda (or auto) and choose GPUs with CUDA_VISIBLE_DEVICES"
            )
        index = local_rank
    else:
        index = int(index_text) if index_text else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise ValueError(
            f"--device cuda:{index}: only {torch.cuda.device_count()} GPU(s) are visible"
        )
    return torch.device("cuda", index)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 on a GPU that has it, else fp16 on a GPU, fp32 on a CPU.

    fp16 autocast is refused on a CPU (slow there and without the GradScaler's purpose);
    bf16 is allowed on a CPU, which is how its code path is tested without a GPU.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("--precision fp16 needs a CUDA device; use bf16 or fp32 on a CPU")
    return precision


@dataclass(frozen=True)
class Compute:
    """A run's device and resolved precision, and the contexts a training step runs in."""

    device: torch.device
    precision: str = "fp32"

    @classmethod
    def from_args(
        cls, device: str = "cpu", precision: str = "auto", local_rank: int | None = None
    ) -> Compute:
        resolved = parse_device(device, local_rank)
        return cls(resolved, resolve_precision(precision, resolved))

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """The forward passes' mixed-precision context (nothing for fp32)."""
        dtype = _AUTOCAST_DTYPES.get(self.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A loss scaler, enabled for fp16 only (disabled, it passes everything through)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def generator(self, seed: int) -> torch.Generator:
        """A generator on this device seeded with ``seed`` (CPU and CUDA streams differ,
        so a run's noise is reproducible on the same kind of device)."""
        return torch.Generator(device=self.device).manual_seed(seed)

    @contextlib.contextmanager
    def on_device(self) -> Iterator[None]:
        """Tensors a family creates without naming a device are created on this one."""
        if self.device.type == "cpu":
            yield
            return
        with self.device:
            yield
