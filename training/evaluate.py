"""Test-split evaluation, shared by the trainer and ``latentserve eval``.

Likelihood families report bits/dim; a family without a likelihood (diffusion) reports
its own scores under their own names, or nothing, never a number labelled bits/dim.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from latentserve.training.devices import Compute
from latentserve.training.families import CaptionedModel, ImageModel
from latentserve.training.likelihood import nats_to_bits_per_dim
from latentserve.training.seeds import EVAL_NOISE, derive_seed


def is_code_length(name: str) -> bool:
    """Whether ``ImageModel.evaluate`` reports ``name`` in nats, to convert to bits/dim."""
    return name.endswith("bits_per_dim")


@torch.no_grad()
def evaluate_model(
    model: ImageModel,
    images: torch.Tensor,
    *,
    seed: int,
    batch_size: int = 250,
    iw_k: int = 1,
    labels: torch.Tensor | None = None,
    captions: Sequence[str] | None = None,
    compute: Compute | None = None,
) -> dict[str, float]:
    """Mean per-image scores over ``images`` (deterministic given seed): code lengths in
    bits/dim, other scores as they are. Empty for a model with nothing to report.

    ``captions`` (one per image) are required by, and only passed to, a ``CaptionedModel``.
    ``compute`` is where ``model`` lives (default: the CPU); batches are moved there.
    """
    compute = compute or Compute(torch.device("cpu"))
    if isinstance(model, CaptionedModel) and captions is None:
        raise ValueError("a text-conditioned model is evaluated on a captioned dataset")
    was_training = model.training
    model.eval()
    generator = compute.generator(derive_seed(seed, EVAL_NOISE))
    totals: dict[str, float] = {}
    for start in range(0, len(images), batch_size):
        batch = slice(start, start + batch_size)
        x = images[batch].to(compute.device)
        batch_labels = None if labels is None else labels[batch].to(compute.device)
        with compute.on_device():
            if isinstance(model, CaptionedModel):
                assert captions is not None
                scores = model.evaluate(x, generator, iw_k, batch_labels, captions[batch])
            else:
                scores = model.evaluate(x, generator, iw_k, labels=batch_labels)
        for name, values in scores.items():
            totals[name] = totals.get(name, 0.0) + float(values.double().sum())
    model.train(was_training)
    dims = model.image.dims
    return {
        name: nats_to_bits_per_dim(total / len(images), dims)
        if is_code_length(name)
        else total / len(images)
        for name, total in totals.items()
    }
