"""DDPM: UNet shapes, the schedule formulas, ε/v targets, label dropout, EMA, training
and exact resume."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from latentserve.training import checkpoint as ckpt
from latentserve.training.data import load_mnist
from latentserve.training.evaluate import evaluate_model
from latentserve.training.families import ImageShape
from latentserve.training.families.ddpm import DDPM, DDPMConfig, to_signed
from latentserve.training.families.ema import EMA
from latentserve.training.families.unet import UNet
from latentserve.training.trainer import train
from safetensors.torch import load_file
from tiny_runs import tiny_config

from latentserve.noise_schedule import alphas_cumprod

TINY = {"widths": [8, 16], "groups": 4}


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 20, 12)])
@pytest.mark.parametrize("num_classes", [0, 10])
def test_unet_keeps_the_sample_shape(shape: tuple[int, int, int], num_classes: int) -> None:
    torch.manual_seed(0)
    net = UNet(shape[0], [8, 16, 16], depth=2, groups=4, num_classes=num_classes)
    x = torch.randn(3, *shape)
    labels = torch.tensor([0, 5, num_classes]) if num_classes else None
    out = net(x, torch.tensor([0.0, 10.0, 999.0]), labels)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_conditional_unet_refuses_missing_labels() -> None:
    net = UNet(1, [8], depth=1, groups=4, num_classes=3)
    with pytest.raises(ValueError, match="needs labels"):
        net(torch.zeros(1, 1, 8, 8), torch.zeros(1))


def test_the_model_trains_with_the_schedule_it_exports() -> None:
    config = DDPMConfig(**TINY, beta_schedule="linear", num_train_timesteps=50)
    model = DDPM(config, ImageShape(1, 8, 8))
    assert np.array_equal(model.alphas_cumprod, alphas_cumprod("linear", 50, 1e-4, 0.02))
    expected = torch.from_numpy(model.alphas_cumprod).sqrt().float()
    assert torch.equal(model.signal, expected)
    assert "signal" not in model.state_dict()  # derived from the config, not saved


class ZeroNet(torch.nn.Module):
    """Predicts 0, so the per-image loss is the mean square of the target."""

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: object = None) -> torch.Tensor:
        return torch.zeros_like(x)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_targets_are_epsilon_or_v(prediction_type: str) -> None:
    config = DDPMConfig(**TINY, prediction_type=prediction_type, num_train_timesteps=50)
    model = DDPM(config, ImageShape(1, 8, 8))
    x = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)
    losses = model._losses(ZeroNet(), x, torch.Generator().manual_seed(3), None, 0.0)
    g = torch.Generator().manual_seed(3)  # replay the draws: t, then ε
    t = torch.randint(0, 50, (6,), generator=g)
    eps = torch.randn(6, 1, 8, 8, generator=g)
    alpha_bar = torch.from_numpy(alphas_cumprod("cosine", 50))[t]
    a, s = alpha_bar.sqrt().view(6, 1, 1, 1), (1 - alpha_bar).sqrt().view(6, 1, 1, 1)
    target = eps if prediction_type == "epsilon" else a * eps - s * to_signed(x).double()
    expected = target.square().flatten(1).mean(1)
    assert losses.double().tolist() == pytest.approx(expected.tolist(), rel=1e-5)


def test_pixels_map_to_minus_one_one() -> None:
    x = torch.tensor([0, 255], dtype=torch.uint8)
    assert to_signed(x).tolist() == [-1.0, 1.0]


def test_label_dropout_draws_from_the_generator() -> None:
    model = DDPM(DDPMConfig(**TINY, num_classes=10), ImageShape(1, 8, 8))
    labels = torch.arange(1000) % 10

    def dropped(seed: int, p: float) -> torch.Tensor:
        return model._conditioning(labels, 1000, torch.Generator().manual_seed(seed), p)

    a, b, c = dropped(0, 0.3), dropped(0, 0.3), dropped(1, 0.3)
    assert torch.equal(a, b) and not torch.equal(a, c)
    null = a == 10
    assert 0.25 < null.float().mean().item() < 0.35
    assert torch.equal(a[~null], labels[~null])  # kept labels are untouched
    assert torch.equal(dropped(0, 0.0), labels)
    assert bool((dropped(0, 1.0) == 10).all())
    with pytest.raises(ValueError, match="needs a dataset with labels"):
        model.training_step(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.Generator())


def test_ema_update_arithmetic_with_warmup() -> None:
    source = torch.nn.Linear(2, 1)
    ema = EMA(source, decay=0.9)
    shadow = ema.shadow.weight
    assert not shadow.requires_grad and torch.equal(shadow, source.weight)
    for n in range(12):
        before = shadow.detach().clone()
        with torch.no_grad():
            source.weight.add_(1.0)
        d = min(0.9, (1 + n) / (10 + n))
        ema.update(source)
        expected = d * before + (1 - d) * source.weight.detach()
        assert torch.allclose(shadow, expected, atol=1e-6), n
    assert int(ema.updates) == 12 and ema.current_decay() == pytest.approx(13 / 22)
    assert "shadow.weight" in ema.state_dict() and "updates" in ema.state_dict()


def test_only_the_unet_is_optimised() -> None:
    model = DDPM(DDPMConfig(**TINY), ImageShape(1, 8, 8))
    [optimizer] = model.configure_optimizers(1e-3)
    optimised = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert optimised == {id(p) for p in model.unet.parameters()}


def test_resume_with_ema_lands_on_the_uninterrupted_weights(tmp_path: Path) -> None:
    config = tiny_config("ddpm-tiny", steps=10, log_every=2)
    straight = train(config, tmp_path / "straight", progress=False)
    train(config, tmp_path / "resumed", stop_at=4, progress=False)
    resumed = train(config, tmp_path / "resumed", resume=True, progress=False)
    a = load_file(str(tmp_path / "straight" / ckpt.CHECKPOINT))
    b = load_file(str(tmp_path / "resumed" / ckpt.CHECKPOINT))
    assert any(k.startswith("ema.shadow.") for k in a) and int(a["ema.updates"]) == 10
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["ema.shadow.conv_out.weight"], a["unet.conv_out.weight"])
    assert resumed.test_metrics == straight.test_metrics
    assert set(straight.test_metrics) == {"denoising_mse"}  # no bits/dim: no likelihood


def test_training_lowers_the_test_denoising_loss(tmp_path: Path) -> None:
    config = tiny_config("ddpm-tiny")
    torch.manual_seed(config.seed)
    data = load_mnist()
    before = evaluate_model(ckpt.build_model(config), data.test, seed=0, labels=data.test_labels)[
        "denoising_mse"
    ]
    after = train(config, tmp_path / "run", progress=False).test_metrics["denoising_mse"]
    assert after < 0.6 * before, (before, after)


def test_v_prediction_linear_unconditional_trains(tmp_path: Path) -> None:
    base = tiny_config("ddpm-tiny", steps=3)
    model = dict(base.model, prediction_type="v_prediction", beta_schedule="linear")
    config = dataclasses.replace(base, model={**model, "num_classes": 0})
    result = train(config, tmp_path / "run", progress=False)
    assert math.isfinite(result.test_metrics["denoising_mse"])
    assert not any(
        k.startswith("unet.label_emb") for k in load_file(str(tmp_path / "run" / ckpt.CHECKPOINT))
    )
