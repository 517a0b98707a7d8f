"""A trained KL autoencoder as the frozen first stage of latent diffusion.

Latent diffusion trains on ``latent_scale * encode(x)`` (about unit variance) and
decodes ``decode(sample / latent_scale)``. Both directions live here, once, so the
diffusion trainer, its evaluation and its tests agree on the scaling and the batching.
Latents are posterior means, never samples, so encoding a split is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from latentserve.training.checkpoint import load_run
from latentserve.training.config import RunConfig
from latentserve.training.families.klae import KLAutoencoder
from latentserve.training.likelihood import LEVELS


@dataclass(frozen=True)
class FrozenAutoencoder:
    """A finished ``klae`` run: its model (eval mode, no gradients), scale and config."""

    model: KLAutoencoder
    scale: float
    config: RunConfig

    def encode(self, images: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
        """uint8 N×C×H×W images → scaled latents, float32 (N, *latent_shape)."""
        return self.model.encode_split(images, batch_size) * self.scale

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
        """Scaled latents → uint8 N×C×H×W images (rounded to the 8-bit levels)."""
        images = [
            self.model.decode(latents[i : i + batch_size] / self.scale)
            for i in range(0, len(latents), batch_size)
        ]
        return (torch.cat(images) * (LEVELS - 1)).round().to(torch.uint8)


def load_autoencoder(run_dir: Path) -> FrozenAutoencoder:
    """The autoencoder of a completed ``klae`` run in ``run_dir``, frozen.

    Refuses another family's run, and a run stopped before its last step (its latent
    scale is only fitted when training completes).
    """
    run = load_run(run_dir)
    if not isinstance(run.model, KLAutoencoder):
        raise ValueError(f"{run_dir} holds a {run.config.family!r} run, not a 'klae' autoencoder")
    scale = run.model.trained_scale()
    return FrozenAutoencoder(run.model.requires_grad_(False), scale, run.config)
