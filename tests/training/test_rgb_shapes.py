"""Every family's code path takes 32×32 RGB images, not only 28×28 MNIST digits."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from latentserve.training import checkpoint as ckpt
from tiny_runs import tiny_config


@pytest.mark.parametrize(
    "config",
    [
        "vae-tiny",
        "ae-tiny",
        "nvae-tiny",
        "glow-tiny",
        "vqvae-tiny",
        "vqvae2-tiny",
        "ddpm-tiny",
        "klae-tiny",
    ],
)
def test_a_training_step_and_evaluation_on_32x32_rgb(config: str) -> None:
    base = tiny_config(config)
    rgb = dataclasses.replace(
        base, image=dataclasses.replace(base.image, height=32, width=32, channels=3)
    )
    model = ckpt.build_model(rgb)
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 3])  # used by class-conditional families, ignored by others
    step = model.training_step(x, torch.Generator().manual_seed(0), labels)
    step.loss.backward()
    assert math.isfinite(step.loss.item())
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    with torch.no_grad():
        scores = model.eval().evaluate(x, torch.Generator().manual_seed(0), labels=labels)
    for name, nats in scores.items():
        assert nats.shape == (4,) and torch.isfinite(nats).all(), name
