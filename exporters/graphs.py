"""The modules that become exported graphs, one per role of the I/O contract.

Each wraps a trained ``LatentModel`` and exposes exactly the inputs and outputs that
``latentserve.manifest`` documents for its role. None draws random numbers: the
sampler takes its prior noise as an input, so the server controls every seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from latentserve.training.families import LatentModel
from latentserve.training.likelihood import LEVELS, discretized_logistic_log_prob
from torch import nn

LOG_2PI = math.log(2.0 * math.pi)


def image_to_levels(image: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] (as the server decodes PNGs) → the 8-bit levels, as float."""
    return torch.round(image.clamp(0.0, 1.0) * (LEVELS - 1))


class MethodGraph(nn.Module):
    """A graph that is one method of the model, unchanged (``VQVAE.encode_codes``, a prior).

    The model stays a submodule, so tracing and export see its weights; the method is
    passed as a function, never looked up by name.
    """

    def __init__(self, model: nn.Module, method: Callable[..., object]) -> None:
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        return self.method(self.model, *inputs)


class CodeLengthGraph(nn.Module):
    """``image`` → ``bits_per_dim`` for models with a deterministic bound (VQ-VAE, VQ-VAE-2):
    the same ``code_lengths`` the trainer's evaluation reports, on the image's 8-bit levels."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        nats = self.model.code_lengths(image_to_levels(image))["bits_per_dim"]
        return nats / (self.model.image.dims * math.log(2.0))


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


class VAELogProbGraph(nn.Module):
    """(``image``, ``noise``) → ``bits_per_dim``: the importance-weighted bound.

    ``noise`` (batch, k, latent) are standard normals the server draws; with k = 1 this
    is a one-sample estimate of the negative ELBO, with k > 1 the IW bound of Burda et
    al., tighter as k grows.
    """

    def __init__(self, model: LatentModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        x = image_to_levels(image)
        mean, logvar = self.model.encode(x / (LEVELS - 1))
        batch, k = noise.shape[0], noise.shape[1]
        std = torch.exp(0.5 * logvar)
        z = mean.unsqueeze(1) + std.unsqueeze(1) * noise  # (batch, k, latent)
        log_q = -0.5 * (noise.square() + logvar.unsqueeze(1) + LOG_2PI).sum(-1)
        log_prior = -0.5 * (z.square() + LOG_2PI).sum(-1)
        loc, log_scale = self.model.decode(z.flatten(0, 1))
        x_rep = x.unsqueeze(1).expand(-1, k, -1, -1, -1).flatten(0, 1)
        log_px = discretized_logistic_log_prob(x_rep, loc, log_scale).flatten(1).sum(1)
        log_w = log_prior + log_px.view(batch, k) - log_q
        # log k from the tensor itself, so the traced graph keeps k dynamic
        log_k = torch.log(torch.ones_like(log_w).sum(1))
        nll = -(torch.logsumexp(log_w, dim=1) - log_k)
        return nll / (self.model.image.dims * math.log(2.0))


def generator_to_unit(image: torch.Tensor) -> torch.Tensor:
    """A GAN generator's output in [-1, 1] → image in [0, 1]."""
    return ((image + 1.0) * 0.5).clamp(0.0, 1.0)
