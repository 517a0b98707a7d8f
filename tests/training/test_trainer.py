"""The trainer: learns, is reproducible from its seed, and resumes exactly."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from latentserve.training import checkpoint as ckpt
from latentserve.training.data import load_mnist
from latentserve.training.evaluate import evaluate_model
from latentserve.training.trainer import train
from safetensors.torch import load_file
from tiny_runs import tiny_config as tiny


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / ckpt.CHECKPOINT))


@pytest.mark.parametrize("family_config", ["vae-tiny", "ae-tiny"])
def test_training_lowers_test_bits_per_dim(tmp_path: Path, family_config: str) -> None:
    config = tiny(family_config)
    torch.manual_seed(config.seed)
    untrained = ckpt.build_model(config)
    metric = "bits_per_dim" if config.family == "vae" else "recon_bits_per_dim"
    before = evaluate_model(untrained, load_mnist().test, seed=0)[metric]
    result = train(config, tmp_path / "run", progress=False)
    after = result.test_metrics[metric]
    assert after < before - 1.0, (before, after)
    records = ckpt.read_metrics(tmp_path / "run")
    train_records = [r for r in records if r["event"] == "train"]
    assert [r["step"] for r in train_records] == [10, 20, 30]
    assert records[-1] == {"event": "eval", "split": "test", "step": 30, **result.test_metrics}
    saved = json.loads((tmp_path / "run" / ckpt.CONFIG).read_text())
    assert saved == config.to_dict()
    assert saved["model"]["latent_dim"] == 4 and saved["train"]["lr_schedule"] == "cosine"


def test_same_seed_same_weights_other_seed_other_weights(tmp_path: Path) -> None:
    config = tiny(steps=8)
    train(config, tmp_path / "a", progress=False)
    train(config, tmp_path / "b", progress=False)
    train(dataclasses.replace(config, seed=1), tmp_path / "c", progress=False)
    a, b, c = weights(tmp_path / "a"), weights(tmp_path / "b"), weights(tmp_path / "c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_resume_lands_on_the_uninterrupted_weights(tmp_path: Path) -> None:
    config = tiny(steps=12, log_every=2)
    straight = train(config, tmp_path / "straight", progress=False)
    partial = train(config, tmp_path / "resumed", stop_at=5, progress=False)
    assert partial.step == 5 and partial.test_metrics == {}
    assert ckpt.checkpoint_step(tmp_path / "resumed") == 5
    resumed = train(config, tmp_path / "resumed", resume=True, progress=False)
    assert resumed.step == 12
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.test_metrics == straight.test_metrics
    steps = [r["step"] for r in ckpt.read_metrics(tmp_path / "resumed") if r["event"] == "train"]
    assert steps == [2, 4, 6, 8, 10, 12]


def test_existing_run_is_not_overwritten(tmp_path: Path) -> None:
    config = tiny(steps=2)
    train(config, tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        train(config, tmp_path / "run", progress=False)


def test_epochs_count_full_batches() -> None:
    config = tiny(steps=None, epochs=3, batch_size=64)
    assert config.train.total_steps(4500) == 3 * 70  # the partial 71st batch is dropped
    with pytest.raises(ValueError, match="exceeds the 10 train images"):
        config.train.total_steps(10)


def test_optimizer_state_round_trips(tmp_path: Path) -> None:
    config = tiny(steps=3)
    train(config, tmp_path / "run", progress=False)
    run = ckpt.load_run(tmp_path / "run")
    optimizer = torch.optim.Adam(run.model.parameters(), lr=1.0)
    ckpt.load_optimizer_state(tmp_path / "run", optimizer)
    state = optimizer.state_dict()
    assert len(state["state"]) == len(list(run.model.parameters()))
    assert float(state["state"][0]["step"]) == 3.0
    assert state["param_groups"][0]["lr"] != 1.0  # restored from the checkpoint


def test_several_optimizers_round_trip_one_file_each(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    optimizers = [
        torch.optim.Adam(model[0].parameters(), lr=1e-3),
        torch.optim.SGD(model[1].parameters(), lr=0.5, momentum=0.9),
    ]
    model(torch.ones(2, 3)).sum().backward()
    for optimizer in optimizers:
        optimizer.step()
    ckpt.save_checkpoint(tmp_path, model, optimizers, step=1)
    assert ckpt.optimizer_path(tmp_path, 1).is_file()
    fresh = [
        torch.optim.Adam(model[0].parameters(), lr=1.0),
        torch.optim.SGD(model[1].parameters(), lr=1.0, momentum=0.0),
    ]
    for index, optimizer in enumerate(fresh):
        ckpt.load_optimizer_state(tmp_path, optimizer, index)
    assert fresh[1].param_groups[0]["momentum"] == 0.9
    for saved, loaded in zip(optimizers, fresh, strict=True):
        a, b = saved.state_dict(), loaded.state_dict()
        assert [g["lr"] for g in a["param_groups"]] == [g["lr"] for g in b["param_groups"]]
        for index, state in a["state"].items():
            assert all(
                torch.equal(torch.as_tensor(v), b["state"][index][k]) for k, v in state.items()
            )
