"""Test-split evaluation in bits/dim, shared by the trainer and ``latentserve eval``."""

from __future__ import annotations

import torch
from latentserve.training.families import ImageModel
from latentserve.training.likelihood import nats_to_bits_per_dim
from latentserve.training.seeds import EVAL_NOISE, torch_generator


@torch.no_grad()
def evaluate_model(
    model: ImageModel, images: torch.Tensor, *, seed: int, batch_size: int = 250, iw_k: int = 1
) -> dict[str, float]:
    """Mean per-image code lengths over ``images``, in bits/dim (deterministic given seed)."""
    was_training = model.training
    model.eval()
    generator = torch_generator(seed, EVAL_NOISE)
    totals: dict[str, float] = {}
    for start in range(0, len(images), batch_size):
        for name, nats in model.evaluate(
            images[start : start + batch_size], generator, iw_k
        ).items():
            totals[name] = totals.get(name, 0.0) + float(nats.double().sum())
    model.train(was_training)
    dims = model.image.dims
    return {name: nats_to_bits_per_dim(total / len(images), dims) for name, total in totals.items()}
