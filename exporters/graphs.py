"""The modules that become exported graphs, one per role of the I/O contract.

Each wraps a trained ``LatentModel`` and exposes exactly the inputs and outputs that
``latentserve.manifest`` documents for its role. None draws random numbers: the
sampler takes its prior noise as an input, so the server controls every seed.
"""

from __future__ import annotations

import torch
from latentserve.training.families import LatentModel
from torch import nn


class EncoderMeanGraph(nn.Module):
    """``image`` → ``latent``: the code (autoencoder) or posterior mean."""

    def __init__(self, model: LatentModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.encode(image)[0]


class EncoderGaussianGraph(nn.Module):
    """``image`` → (``latent``, ``logvar``): the diagonal Gaussian posterior."""

    def __init__(self, model: LatentModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.model.encode(image)
        if logvar is None:
            raise ValueError("this model has no posterior variance to export")
        return mean, logvar


class DecoderGraph(nn.Module):
    """``latent`` → ``image`` in [0, 1] (the clamped logistic location)."""

    def __init__(self, model: LatentModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.model.decode_mean(latent)


class SamplerGraph(nn.Module):
    """(``noise``, ``temperature``) → ``image``: decode prior noise scaled per item."""

    def __init__(self, model: LatentModel) -> None:
        super().__init__()
        self.model = model
        self.latent_rank = len(model.latent_shape)

    def forward(self, noise: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        scale = temperature.reshape((-1,) + (1,) * self.latent_rank)
        return self.model.decode_mean(noise * scale)
