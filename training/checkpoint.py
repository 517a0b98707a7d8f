"""Run folders: safetensors weights and optimizer state plus the resolved JSON config.

Nothing here pickles: tensors go to safetensors, everything else (step, optimizer
hyper-parameters) to JSON, so loading a run never executes code from the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from latentserve.training.config import RunConfig, load_config
from latentserve.training.families import ImageModel, get_family
from safetensors.torch import load_file, safe_open, save_file

CHECKPOINT = "checkpoint.safetensors"
OPTIMIZER = "optimizer.safetensors"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
EVAL_RECORD_KEYS = ("event", "split", "step")  # an eval record's keys that are not metrics


@dataclass
class LoadedRun:
    """A trained run: its resolved config, the model with weights, and the step reached."""

    config: RunConfig
    model: ImageModel
    step: int


def build_model(config: RunConfig) -> ImageModel:
    """The family's model for this config (random init from the current torch seed)."""
    return get_family(config.family).build(config.model_config(), config.image.shape())


def write_config(run_dir: Path, config: RunConfig) -> None:
    (run_dir / CONFIG).write_text(json.dumps(config.to_dict(), indent=2) + "\n")


def optimizer_path(run_dir: Path, index: int) -> Path:
    """One file per optimiser: ``optimizer.safetensors``, then ``optimizer.1.safetensors``…
    (a single-optimiser run keeps the one file it always had)."""
    return run_dir / (OPTIMIZER if index == 0 else f"optimizer.{index}.safetensors")


def save_checkpoint(
    run_dir: Path, model: torch.nn.Module, optimizers: list[torch.optim.Optimizer], step: int
) -> None:
    """Write weights (EMA shadows included: they are module state) and every optimiser's
    state; files are replaced atomically (tmp + rename)."""
    weights = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    _atomic_save(run_dir / CHECKPOINT, weights, {"step": str(step)})
    for index, optimizer in enumerate(optimizers):
        state = optimizer.state_dict()
        tensors: dict[str, torch.Tensor] = {}
        for param, param_state in state["state"].items():
            for key, value in param_state.items():
                tensors[f"{param}.{key}"] = torch.as_tensor(value).contiguous()
        _atomic_save(
            optimizer_path(run_dir, index),
            tensors,
            {"step": str(step), "param_groups": json.dumps(state["param_groups"])},
        )


def _atomic_save(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)


def checkpoint_step(run_dir: Path) -> int:
    """The training step a run's checkpoint was taken at."""
    with safe_open(str(run_dir / CHECKPOINT), framework="pt") as f:
        return int(f.metadata()["step"])


def load_optimizer_state(run_dir: Path, optimizer: torch.optim.Optimizer, index: int = 0) -> None:
    """Restore optimiser ``index``'s state written by ``save_checkpoint``."""
    path = optimizer_path(run_dir, index)
    with safe_open(str(path), framework="pt") as f:
        param_groups = json.loads(f.metadata()["param_groups"])
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in load_file(str(path)).items():
        param, key = name.split(".", 1)
        state.setdefault(int(param), {})[key] = tensor
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})


def load_weights(run_dir: Path, model: torch.nn.Module) -> int:
    """Load a run's checkpoint into ``model``; returns the step it was taken at."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no {CHECKPOINT} in run folder {run_dir}")
    model.load_state_dict(load_file(str(path)))
    return checkpoint_step(run_dir)


def load_run(run_dir: Path) -> LoadedRun:
    """A run folder's model in eval mode, ready for evaluation or export."""
    config = load_config(run_dir / CONFIG)
    model = build_model(config)
    step = load_weights(run_dir, model)
    model.eval()
    return LoadedRun(config=config, model=model, step=step)


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    with (run_dir / METRICS).open("a") as f:
        f.write(json.dumps(record) + "\n")


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Keep only records up to ``step``, so a resumed run logs each step once."""
    kept = [r for r in read_metrics(run_dir) if r.get("step", 0) <= step]
    (run_dir / METRICS).write_text("".join(json.dumps(r) + "\n" for r in kept))


def last_test_metrics(run_dir: Path) -> dict[str, float]:
    """Test-split metrics logged at the end of training (empty if never evaluated)."""
    records = [r for r in read_metrics(run_dir) if r.get("event") == "eval"]
    if not records:
        return {}
    return {k: float(v) for k, v in records[-1].items() if k not in EVAL_RECORD_KEYS}
