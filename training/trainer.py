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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from latentserve.training import checkpoint as ckpt
from latentserve.training.config import RunConfig, TrainConfig, load_config
from latentserve.training.data import ImageDataset, captions_of, load_dataset
from latentserve.training.evaluate import evaluate_model, is_code_length
from latentserve.training.families import CaptionedModel, ImageModel, PhasedModel, StepOutput
from latentserve.training.seeds import DATA_ORDER, TRAIN_NOISE, derive_seed, torch_generator
from tqdm import tqdm

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    test_metrics: dict[str, float]
    seconds: float


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
) -> TrainResult:
    """Train (or resume) a run in ``run_dir``; evaluates on the test split when complete.

    ``stop_at`` ends the loop early at that step with a checkpoint, as an interruption
    would; ``resume=True`` continues from the checkpoint in ``run_dir``.
    """
    start = time.perf_counter()
    set_threads(config.train.num_threads)
    data = load_dataset(
        config.dataset, config.image.height, config.image.width, config.image.channels
    )
    total = config.train.total_steps(len(data.train))
    torch.manual_seed(config.seed)
    model = ckpt.build_model(config)
    optimizers = model.configure_optimizers(config.train.lr)
    base_lrs = [[group["lr"] for group in opt.param_groups] for opt in optimizers]
    step = _prepare_run_dir(run_dir, config, model, optimizers, resume)
    end = total if stop_at is None else min(stop_at, total)
    if isinstance(model, CaptionedModel) and captions_of(data, "train") is None:
        raise ValueError(f"{config.family} is text-conditioned: {data.name!r} has no captions")
    model.train()
    bar = tqdm(total=total, initial=step, desc=f"train {config.family}", disable=not progress)
    while step < end:
        _calibrate_if_due(model, config, data, step, total, run_dir)
        _set_lr(optimizers, base_lrs, _lr_factor(config.train, step, total))
        _train_step(model, optimizers, config, data, step, total, run_dir)
        step += 1
        bar.update(1)
        if config.train.checkpoint_every and step % config.train.checkpoint_every == 0:
            ckpt.save_checkpoint(run_dir, model, optimizers, step)
    bar.close()
    _calibrate_if_due(model, config, data, step, total, run_dir)
    ckpt.save_checkpoint(run_dir, model, optimizers, step)
    test_metrics: dict[str, float] = {}
    if step == total:
        test_metrics = evaluate_model(
            model,
            data.test,
            seed=config.seed,
            batch_size=config.train.eval_batch_size,
            labels=data.test_labels,
            captions=captions_of(data, "test"),
        )
        ckpt.append_metrics(
            run_dir, {"event": "eval", "split": "test", "step": step, **test_metrics}
        )
        log.info("test split after %d steps: %s", step, test_metrics)
        if not any(is_code_length(name) for name in test_metrics):
            log.info("%s has no likelihood: no test bits/dim", config.family)
    return TrainResult(run_dir, step, test_metrics, time.perf_counter() - start)


def _prepare_run_dir(
    run_dir: Path,
    config: RunConfig,
    model: ImageModel,
    optimizers: list[torch.optim.Optimizer],
    resume: bool,
) -> int:
    """Create a fresh run folder or restore a checkpoint; returns the step to start at."""
    if resume:
        step = ckpt.load_weights(run_dir, model)
        for index, optimizer in enumerate(optimizers):
            ckpt.load_optimizer_state(run_dir, optimizer, index)
        ckpt.truncate_metrics(run_dir, step)  # drop logs past the checkpoint
        return step
    if (run_dir / ckpt.CHECKPOINT).exists():
        raise ValueError(f"run folder {run_dir} already holds a checkpoint; resume it instead")
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt.write_config(run_dir, config)
    return 0


def _calibrate_if_due(
    model: ImageModel, config: RunConfig, data: ImageDataset, step: int, total: int, run_dir: Path
) -> None:
    """``model.calibrate`` on the training split at the model's calibration step."""
    if step != model.calibration_step(total):
        return
    fitted = model.calibrate(data.train, config.train.eval_batch_size)
    if fitted:
        ckpt.append_metrics(run_dir, {"event": "calibrate", "step": step, **fitted})


def _train_step(
    model: ImageModel,
    optimizers: list[torch.optim.Optimizer],
    config: RunConfig,
    data: ImageDataset,
    step: int,
    total: int,
    run_dir: Path,
) -> None:
    index = _batch_indices(config.seed, step, len(data.train), config.train.batch_size)
    labels = None if data.train_labels is None else data.train_labels[index]
    generator = torch_generator(config.seed, TRAIN_NOISE, step)
    captions = captions_of(data, "train")
    metrics: dict[str, float] = {}
    if isinstance(model, PhasedModel):
        phases = model.training_phases(data.train[index], generator, labels)
        for out, optimizer in zip(phases, optimizers, strict=True):
            _minimise(model, out, [optimizer], config, step)
            metrics.update(out.metrics)
    else:
        if isinstance(model, CaptionedModel) and captions is not None:
            batch_captions = [captions[i] for i in index.tolist()]
            out = model.training_step(data.train[index], generator, labels, batch_captions)
        else:
            out = model.training_step(data.train[index], generator, labels)
        _minimise(model, out, optimizers, config, step)
        metrics = out.metrics
    model.after_optimizer_step()
    if (step + 1) % config.train.log_every == 0 or step + 1 == total:
        lr = config.train.lr * _lr_factor(config.train, step, total)
        ckpt.append_metrics(run_dir, {"event": "train", "step": step + 1, "lr": lr, **metrics})


def _minimise(
    model: ImageModel,
    out: StepOutput,
    optimizers: list[torch.optim.Optimizer],
    config: RunConfig,
    step: int,
) -> None:
    """One backward pass of ``out.loss`` and a step of each of ``optimizers``."""
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    if config.train.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
    for optimizer in optimizers:
        optimizer.step()
    if not math.isfinite(out.loss.item()):
        raise FloatingPointError(f"loss became {out.loss.item()} at step {step}")


def resume(run_dir: Path, *, progress: bool = True) -> TrainResult:
    """Continue the run in ``run_dir`` with its own resolved config."""
    return train(load_config(run_dir / ckpt.CONFIG), run_dir, resume=True, progress=progress)
