"""The one training loop for every family.

Randomness is a pure function of (seed, step): the data order of each epoch and the
noise of each step come from generators seeded from them, never from a global stream.
That is what makes a run reproducible *and* makes ``--resume`` land on exactly the
weights an uninterrupted run would have.

The family owns its optimisation (``ImageModel.configure_optimizers`` and
``after_optimizer_step``); the loop only runs backward, clips, steps every optimiser and
applies the lr schedule as a factor on each parameter group's initial lr. A
``PhasedModel`` (a GAN) yields one loss per optimiser, minimised in turn.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from latentserve.training import checkpoint as ckpt
from latentserve.training import distributed as ddp
from latentserve.training.config import RunConfig, TrainConfig, load_config
from latentserve.training.data import ImageDataset, captions_of, load_dataset
from latentserve.training.devices import Compute
from latentserve.training.evaluate import evaluate_model, is_code_length
from latentserve.training.families import CaptionedModel, ImageModel, PhasedModel, StepOutput
from latentserve.training.seeds import DATA_ORDER, TRAIN_NOISE, derive_seed
from tqdm import tqdm

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    test_metrics: dict[str, float]
    seconds: float
    model: ImageModel | None = field(default=None, repr=False)  # this rank's trained replica


@dataclass
class _Loop:
    """What every step of one run shares: where it computes, the process's rank, and the
    fp16 loss scaler (a pass-through otherwise)."""

    compute: Compute
    ranks: ddp.Ranks
    scaler: torch.amp.GradScaler


def _batch_indices(seed: int, step: int, n: int, batch_size: int) -> torch.Tensor:
    """Indices of step ``step``: epoch-wise permutations, the last partial batch dropped."""
    per_epoch = n // batch_size
    epoch, offset = divmod(step, per_epoch)
    order = np.random.default_rng(derive_seed(seed, DATA_ORDER, epoch)).permutation(n)
    return torch.from_numpy(order[offset * batch_size : (offset + 1) * batch_size])


def _lr_factor(train: TrainConfig, step: int, total: int) -> float:
    """The schedule as a multiple of each optimiser group's initial lr (warmup, cosine)."""
    if step < train.warmup_steps:
        return (step + 1) / train.warmup_steps
    if train.lr_schedule == "constant":
        return 1.0
    progress = (step - train.warmup_steps) / max(1, total - train.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _set_lr(
    optimizers: list[torch.optim.Optimizer], base_lrs: list[list[float]], factor: float
) -> None:
    """Each group's lr: the one the family configured it with, times the schedule."""
    for optimizer, lrs in zip(optimizers, base_lrs, strict=True):
        for group, lr in zip(optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr * factor


def set_threads(requested: int) -> None:
    """Few threads: more than the cores only adds contention on a shared CPU."""
    torch.set_num_threads(requested or min(2, os.cpu_count() or 1))


def train(
    config: RunConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    stop_at: int | None = None,
    progress: bool = True,
    compute: Compute | None = None,
) -> TrainResult:
    """Train (or resume) a run in ``run_dir``; evaluates on the test split when complete.

    ``stop_at`` ends the loop early at that step with a checkpoint, as an interruption
    would; ``resume=True`` continues from the checkpoint in ``run_dir``. ``compute`` is
    the device and precision (default: the CPU in float32). Under ``torchrun`` every
    process calls this with the same arguments; the process group is joined here.
    """
    start = time.perf_counter()
    ranks = ddp.ranks_from_env()
    compute = compute or Compute(torch.device("cpu"))
    ddp.init_process_group(ranks, compute.device)
    set_threads(config.train.num_threads)
    data = load_dataset(
        config.dataset, config.image.height, config.image.width, config.image.channels
    )
    total = config.train.total_steps(len(data.train))
    if config.train.batch_size % ranks.world_size:
        raise ValueError(
            f"train.batch_size {config.train.batch_size} (the global batch) must split evenly "
            f"over the {ranks.world_size} processes"
        )
    torch.manual_seed(config.seed)
    model = ckpt.build_model(config).to(compute.device)
    optimizers = model.configure_optimizers(config.train.lr)
    base_lrs = [[group["lr"] for group in opt.param_groups] for opt in optimizers]
    step = _prepare_run_dir(run_dir, config, model, optimizers, resume, ranks)
    ddp.broadcast_state(model, ranks)  # every replica starts from rank 0's weights
    end = total if stop_at is None else min(stop_at, total)
    if isinstance(model, CaptionedModel) and captions_of(data, "train") is None:
        raise ValueError(f"{config.family} is text-conditioned: {data.name!r} has no captions")
    loop = _Loop(compute, ranks, compute.grad_scaler())
    model.train()
    bar = tqdm(
        total=total,
        initial=step,
        desc=f"train {config.family}",
        disable=not (progress and ranks.is_main),
    )
    while step < end:
        _calibrate_if_due(model, config, data, step, total, run_dir, loop)
        _set_lr(optimizers, base_lrs, _lr_factor(config.train, step, total))
        _train_step(model, optimizers, config, data, step, total, run_dir, loop)
        step += 1
        bar.update(1)
        if config.train.checkpoint_every and step % config.train.checkpoint_every == 0:
            _save(run_dir, model, optimizers, step, ranks)
    bar.close()
    _calibrate_if_due(model, config, data, step, total, run_dir, loop)
    _save(run_dir, model, optimizers, step, ranks)
    test_metrics: dict[str, float] = {}
    if step == total and ranks.is_main:
        test_metrics = _evaluate_test_split(model, config, data, step, run_dir, compute)
    return TrainResult(run_dir, step, test_metrics, time.perf_counter() - start, model)


def _save(
    run_dir: Path,
    model: ImageModel,
    optimizers: list[torch.optim.Optimizer],
    step: int,
    ranks: ddp.Ranks,
) -> None:
    """Rank 0 writes the checkpoint; every rank waits for it, so none runs ahead of a
    checkpoint a resume would start from."""
    if ranks.is_main:
        ckpt.save_checkpoint(run_dir, model, optimizers, step)
    ddp.barrier(ranks)


def _evaluate_test_split(
    model: ImageModel,
    config: RunConfig,
    data: ImageDataset,
    step: int,
    run_dir: Path,
    compute: Compute,
) -> dict[str, float]:
    test_metrics = evaluate_model(
        model,
        data.test,
        seed=config.seed,
        batch_size=config.train.eval_batch_size,
        labels=data.test_labels,
        captions=captions_of(data, "test"),
        compute=compute,
    )
    ckpt.append_metrics(run_dir, {"event": "eval", "split": "test", "step": step, **test_metrics})
    log.info("test split after %d steps: %s", step, test_metrics)
    if not any(is_code_length(name) for name in test_metrics):
        log.info("%s has no likelihood: no test bits/dim", config.family)
    return test_metrics


def _prepare_run_dir(
    run_dir: Path,
    config: RunConfig,
    model: ImageModel,
    optimizers: list[torch.optim.Optimizer],
    resume: bool,
    ranks: ddp.Ranks,
) -> int:
    """Create a fresh run folder or restore a checkpoint; returns the step to start at.

    Every rank reads a resumed checkpoint (the run folder must be on a filesystem all
    nodes share); only rank 0 writes.
    """
    if resume:
        step = ckpt.load_weights(run_dir, model)
        for index, optimizer in enumerate(optimizers):
            ckpt.load_optimizer_state(run_dir, optimizer, index)
        if ranks.is_main:
            ckpt.truncate_metrics(run_dir, step)  # drop logs past the checkpoint
        ddp.barrier(ranks)
        return step
    if (run_dir / ckpt.CHECKPOINT).exists():
        raise ValueError(f"run folder {run_dir} already holds a checkpoint; resume it instead")
    ddp.barrier(ranks)  # every rank has checked before rank 0 writes anything
    if ranks.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.write_config(run_dir, config)
    return 0


def _calibrate_if_due(
    model: ImageModel,
    config: RunConfig,
    data: ImageDataset,
    step: int,
    total: int,
    run_dir: Path,
    loop: _Loop,
) -> None:
    """``model.calibrate`` on the training split at the model's calibration step (on
    every rank, which then takes rank 0's result, so the replicas cannot drift)."""
    if step != model.calibration_step(total):
        return
    with loop.compute.on_device():
        fitted = model.calibrate(data.train.to(loop.compute.device), config.train.eval_batch_size)
    ddp.broadcast_state(model, loop.ranks, buffers_only=True)
    if fitted and loop.ranks.is_main:
        ckpt.append_metrics(run_dir, {"event": "calibrate", "step": step, **fitted})


def _noise_seed(seed: int, step: int, ranks: ddp.Ranks) -> int:
    """A step's noise seed; each rank of a multi-process run draws its own stream, and
    one process draws the stream it always has."""
    if not ranks.distributed:
        return derive_seed(seed, TRAIN_NOISE, step)
    return derive_seed(seed, TRAIN_NOISE, step, ranks.rank)


def _autocast_each(phases: Iterator[StepOutput], compute: Compute) -> Iterator[StepOutput]:
    """A phased model's phases, each one's forward (its code up to the yield) under
    autocast, its backward (by the caller, between yields) outside it."""
    while True:
        with compute.autocast():
            out = next(phases, None)
        if out is None:
            return
        yield out


def _train_step(
    model: ImageModel,
    optimizers: list[torch.optim.Optimizer],
    config: RunConfig,
    data: ImageDataset,
    step: int,
    total: int,
    run_dir: Path,
    loop: _Loop,
) -> None:
    compute = loop.compute
    batch = _batch_indices(config.seed, step, len(data.train), config.train.batch_size)
    index = ddp.shard(batch, loop.ranks)
    x = data.train[index].to(compute.device)
    labels = None if data.train_labels is None else data.train_labels[index].to(compute.device)
    generator = compute.generator(_noise_seed(config.seed, step, loop.ranks))
    captions = captions_of(data, "train")
    metrics: dict[str, float] = {}
    with compute.on_device():
        if isinstance(model, PhasedModel):
            phases = _autocast_each(model.training_phases(x, generator, labels), compute)
            for out, optimizer in zip(phases, optimizers, strict=True):
                _minimise(out, [optimizer], config, step, loop)
                metrics.update(out.metrics)
        else:
            with compute.autocast():
                if isinstance(model, CaptionedModel) and captions is not None:
                    batch_captions = [captions[i] for i in index.tolist()]
                    out = model.training_step(x, generator, labels, batch_captions)
                else:
                    out = model.training_step(x, generator, labels)
            _minimise(out, optimizers, config, step, loop)
            metrics = out.metrics
        model.after_optimizer_step()
    loop.scaler.update()
    ddp.broadcast_state(model, loop.ranks, buffers_only=True)
    if (step + 1) % config.train.log_every == 0 or step + 1 == total:
        metrics = ddp.average_metrics(metrics, loop.ranks, compute.device)
        if loop.ranks.is_main:
            lr = config.train.lr * _lr_factor(config.train, step, total)
            record = {"event": "train", "step": step + 1, "lr": lr, **metrics}
            ckpt.append_metrics(run_dir, record)


def _minimise(
    out: StepOutput,
    optimizers: list[torch.optim.Optimizer],
    config: RunConfig,
    step: int,
    loop: _Loop,
) -> None:
    """One backward pass of ``out.loss``, the gradients averaged over the ranks, and a
    step of each of ``optimizers`` that received gradients (through the loss scaler).

    Clipping sees only these optimisers' parameters: another phase's gradients are left
    over from its own step (in fp16, possibly the infinities of a step the scaler skipped)
    and are no part of this loss's norm.
    """
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    loop.scaler.scale(out.loss).backward()
    params = [p for opt in optimizers for group in opt.param_groups for p in group["params"]]
    ddp.average_gradients(params, loop.ranks)
    stepped = [opt for opt in optimizers if _has_grads(opt)]
    if config.train.grad_clip is not None:
        for optimizer in stepped:
            loop.scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, config.train.grad_clip)
    for optimizer in stepped:
        loop.scaler.step(optimizer)
    if not math.isfinite(out.loss.item()):
        raise FloatingPointError(f"loss became {out.loss.item()} at step {step}")


def _has_grads(optimizer: torch.optim.Optimizer) -> bool:
    """Whether any parameter of ``optimizer`` got a gradient (an idle phase's has none,
    and stepping it would be a no-op that the fp16 loss scaler refuses)."""
    return any(p.grad is not None for group in optimizer.param_groups for p in group["params"])


def resume(run_dir: Path, *, progress: bool = True, compute: Compute | None = None) -> TrainResult:
    """Continue the run in ``run_dir`` with its own resolved config."""
    return train(
        load_config(run_dir / ckpt.CONFIG),
        run_dir,
        resume=True,
        progress=progress,
        compute=compute,
    )
