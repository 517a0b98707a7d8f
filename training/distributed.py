"""Data-parallel training across processes started by ``torchrun``.

Each process (rank) trains a replica of the model on its shard of every global batch:
the trainer's batch of ``batch_size`` indices is split into ``world_size`` equal slices,
so the data order, and with it ``--resume``, stays the single-process one.

Gradients are averaged with one ``all_reduce`` per optimiser phase, over the flattened
gradients of every parameter (one bucket), after the backward pass and before the
optimisers step; the replicas then stay identical because they start identical (rank 0's
weights are broadcast) and apply the same averaged update. This is what
``torch.nn.parallel.DistributedDataParallel`` does, done at the one point the trainer
owns, because the wrapper does not fit how families train: it reduces only during a
backward that follows a forward *through the wrapper*, while a family calls its own
submodules (a GAN's generator and discriminator in two phases with two optimisers), and
it does not support the ``torch.autograd.grad`` of a GAN's R1 penalty. Buffers (batch
norm statistics, EMA counters) are broadcast from rank 0 after each step, as the wrapper
does before each forward.

Backends: NCCL between GPUs, gloo between CPU processes. Outside ``torchrun`` (no
``WORLD_SIZE`` in the environment) everything here is a no-op for one process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: rank among ``world_size``, and on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int | None = None  # set under torchrun

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run folder: config, checkpoints, logs, the progress bar."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def ranks_from_env() -> Ranks:
    """The ranks ``torchrun`` sets in the environment; one process without it."""
    if "WORLD_SIZE" not in os.environ:
        return Ranks()
    return Ranks(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def init_process_group(ranks: Ranks, device: torch.device) -> None:
    """Join the job's process group (NCCL for GPUs, gloo for CPUs), once."""
    if not ranks.distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()


def shard(index: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """This rank's contiguous slice of a global batch's indices."""
    if len(index) % ranks.world_size:
        raise ValueError(
            f"batch_size {len(index)} does not split evenly over {ranks.world_size} processes"
        )
    per_rank = len(index) // ranks.world_size
    return index[ranks.rank * per_rank : (ranks.rank + 1) * per_rank]


def broadcast_state(module: nn.Module, ranks: Ranks, *, buffers_only: bool = False) -> None:
    """Overwrite every rank's parameters (unless ``buffers_only``) and buffers with rank 0's:
    one broadcast per dtype, of the tensors flattened into one bucket."""
    if not ranks.distributed:
        return
    tensors = [] if buffers_only else [p.data for p in module.parameters()]
    tensors += list(module.buffers())
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for tensor in tensors:
        by_dtype.setdefault(tensor.dtype, []).append(tensor)
    with torch.no_grad():
        for group in by_dtype.values():
            flat = torch.cat([t.reshape(-1) for t in group])
            dist.broadcast(flat, src=0)
            _unflatten_into(flat, group)


def _unflatten_into(flat: torch.Tensor, tensors: list[torch.Tensor]) -> None:
    """Copy consecutive slices of ``flat`` back into ``tensors``, in order."""
    offset = 0
    for tensor in tensors:
        tensor.copy_(flat[offset : offset + tensor.numel()].view_as(tensor))
        offset += tensor.numel()


def average_gradients(parameters: Iterable[nn.Parameter], ranks: Ranks) -> None:
    """Replace each gradient with its mean over the ranks (one bucketed all_reduce).

    A parameter that has no gradient on this rank has none on any rank (the replicas run
    the same code), so it is skipped everywhere alike.
    """
    if not ranks.distributed:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= ranks.world_size
    _unflatten_into(flat, grads)


def average_metrics(metrics: dict[str, float], ranks: Ranks, device: torch.device) -> dict:
    """The ranks' mean of each logged metric, so rank 0's log describes the global batch."""
    if not ranks.distributed or not metrics:
        return metrics
    names = sorted(metrics)
    values = torch.tensor([float(metrics[n]) for n in names], dtype=torch.float64, device=device)
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return {n: float(v) / ranks.world_size for n, v in zip(names, values.tolist(), strict=True)}
