"""Glow: a multi-scale normalizing flow with exact likelihood (Kingma & Dhariwal, 2018).

Architecture. ``levels`` levels; each squeezes (C×H×W → 4C×H/2×W/2), runs
``steps_per_level`` steps of flow (actnorm → 1×1 invertible conv → affine coupling), then
(except the last level) factors out half the channels as a latent ``z_i`` whose Gaussian
prior is conditioned on the kept half. The last level's output is ``z_top`` ~ N(0, I).
Height and width must be divisible by ``2 ** levels``: 28×28 MNIST uses 2 levels
(28 → 14 → 7) rather than padding to 32×32, so every modelled dimension is a real pixel
and bits/dim is over exactly the 784 pixels; 32×32×3 images use 3 levels.

NICE and RealNVP are configurations of the same code: ``coupling = "additive"``,
``permutation = "reverse"``, ``actnorm = false`` is NICE-like (volume-preserving steps);
``coupling = "affine"``, ``permutation = "reverse"``, ``actnorm = false`` is RealNVP-like
(multi-scale, affine coupling with our bounded sigmoid scale).

Dequantization and bits/dim. The data are integers ``k`` in {0..255}^D. Add uniform
noise, ``y = k + u`` with ``u ~ U[0, 1)^D``. Any density ``p_Y`` on R^D defines a
discrete model ``P(k) = ∫_{[0,1)^D} p_Y(k + u) du``, and by Jensen
``-log P(k) <= E_u[-log p_Y(k + u)]``. The flow sees ``x = y / 256 - 1/2`` in
[-1/2, 1/2)^D, an affine map with Jacobian determinant ``256^-D``, so
``p_Y(y) = p_X(x) * 256^-D`` and

    -log P(k) <= E_u[-log p_X(x)] + D log 256           (nats per image)
    bits/dim   = (-log p_X(x) + D log 256) / (D ln 2)

with ``log p_X(x) = log p(z) + log|det dz/dx|`` by the change of variables. One ``u``
per image gives an unbiased estimate of this bound. With ``iw_k > 1``, evaluation also
reports ``-log (1/k) sum_i p_Y(k + u_i)`` (importance weights with proposal U[0, 1)),
an upper bound that is tighter in expectation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from latentserve.training.families.base import ImageModel, StepOutput
from latentserve.training.families.flows import (
    FlowStep,
    SplitPrior,
    gaussian_log_prob,
    squeeze,
    unsqueeze,
)
from latentserve.training.families.layers import ImageShape
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as config_dataclass
from torch import nn

LEVELS = 256


@config_dataclass(config=ConfigDict(extra="forbid"))
class GlowConfig:
    """Sizes and variant of the flow; the ``[model]`` table of a training config."""

    levels: int = Field(default=2, ge=1)
    steps_per_level: int = Field(default=8, ge=1)
    hidden_channels: int = Field(default=128, gt=0)
    coupling: Literal["additive", "affine"] = "affine"
    permutation: Literal["reverse", "shuffle", "invconv"] = "invconv"
    actnorm: bool = True


@dataclass
class FlowOutput:
    """The latents of ``x`` (finest level first), ``log|det dz/dx|`` and ``log p(z)``."""

    latents: list[torch.Tensor]
    logdet: torch.Tensor
    log_prior: torch.Tensor


class Level(nn.Module):
    """Squeeze, ``steps`` flow steps, then factor out half (unless it is the top level)."""

    def __init__(self, in_channels: int, config: GlowConfig, top: bool) -> None:
        super().__init__()
        channels = 4 * in_channels
        self.steps = nn.ModuleList(
            FlowStep(
                channels,
                config.hidden_channels,
                config.coupling,
                config.permutation,
                config.actnorm,
            )
            for _ in range(config.steps_per_level)
        )
        self.split = None if top else SplitPrior(channels)
        self.out_channels = channels if top else self.split.keep

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor]:
        """x → (kept h, or None at the top; latent z; logdet; log p(z | h))."""
        x = squeeze(x)
        logdet = x.new_zeros(x.shape[0])
        for step in self.steps:
            x, ld = step(x)
            logdet = logdet + ld
        if self.split is None:
            zeros = torch.zeros_like(x)
            return None, x, logdet, gaussian_log_prob(x, zeros, zeros)
        h, z, log_pz = self.split(x)
        return h, z, logdet, log_pz

    def reverse(self, h: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
        x = z if self.split is None else self.split.reverse(h, z)
        for step in reversed(self.steps):
            x = step.reverse(x)
        return unsqueeze(x)


class Glow(ImageModel):
    has_prior = True

    def __init__(self, config: GlowConfig, image: ImageShape) -> None:
        super().__init__(image)
        factor = 2**config.levels
        if image.height % factor or image.width % factor:
            raise ValueError(
                f"image {image.height}x{image.width} must be divisible by 2**levels = {factor} "
                f"for {config.levels} levels (28x28 fits levels <= 2, 32x32 levels <= 5)"
            )
        self.levels = nn.ModuleList()
        channels = image.channels
        for i in range(config.levels):
            level = Level(channels, config, top=i == config.levels - 1)
            self.levels.append(level)
            channels = level.out_channels

    @property
    def latent_shapes(self) -> list[tuple[int, int, int]]:
        """C×H×W of each level's latent, finest first (their sizes sum to the image's)."""
        shapes = []
        c, h, w = self.image.channels, self.image.height, self.image.width
        for level in self.levels:
            c, h, w = 4 * c, h // 2, w // 2
            z_channels = c if level.split is None else c - level.split.keep
            shapes.append((z_channels, h, w))
            c = level.out_channels
        return shapes

    def encode(self, x: torch.Tensor) -> FlowOutput:
        """Continuous image in [-1/2, 1/2) → latents, log-determinant and log prior."""
        latents = []
        logdet = x.new_zeros(x.shape[0])
        log_prior = x.new_zeros(x.shape[0])
        for level in self.levels:
            x, z, ld, log_pz = level(x)
            latents.append(z)
            logdet = logdet + ld
            log_prior = log_prior + log_pz
        return FlowOutput(latents, logdet, log_prior)

    def decode(self, latents: list[torch.Tensor]) -> torch.Tensor:
        """The exact inverse of ``encode``: latents (finest first) → image in [-1/2, 1/2)."""
        x = None
        for level, z in zip(reversed(self.levels), reversed(latents), strict=True):
            x = level.reverse(x, z)
        return x

    def sample(self, noises: list[torch.Tensor], temperature: torch.Tensor) -> torch.Tensor:
        """Standard-normal ``noises`` (shapes ``latent_shapes``) → images in [0, 1].

        Each latent is ``mean + std * temperature * eps`` under its prior, drawn top-down
        because a factored-out latent's prior depends on the levels above it.
        """
        x = None
        for level, eps in zip(reversed(self.levels), reversed(noises), strict=True):
            if level.split is None:
                z = eps * temperature.view(-1, 1, 1, 1)
            else:
                z = level.split.sample_z(x, eps, temperature)
            x = level.reverse(x, z)
        return (x + 0.5).clamp(0.0, 1.0)

    def draw_noise(self, n: int, generator: torch.Generator) -> list[torch.Tensor]:
        return [torch.randn((n, *shape), generator=generator) for shape in self.latent_shapes]

    def dequantize(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """uint8 levels k → ``(k + u) / 256 - 1/2`` with ``u ~ U[0, 1)``."""
        u = torch.rand(x.shape, generator=generator)
        return (x.to(torch.float32) + u) / LEVELS - 0.5

    def nll_nats(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Per-image ``-log p_Y(k + u)`` in nats: an estimate of the bound on ``-log P(k)``."""
        out = self.encode(self.dequantize(x, generator))
        return -(out.log_prior + out.logdet) + self.image.dims * math.log(LEVELS)

    def training_step(
        self, x: torch.Tensor, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> StepOutput:
        nats_per_dim = self.nll_nats(x, generator).mean() / self.image.dims
        return StepOutput(
            loss=nats_per_dim, metrics={"bits_per_dim": nats_per_dim.item() / math.log(2.0)}
        )

    def evaluate(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        iw_k: int = 1,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        out = {"bits_per_dim": self.nll_nats(x, generator)}
        if iw_k > 1:
            log_p = torch.stack([-self.nll_nats(x, generator) for _ in range(iw_k)])
            out[f"iw{iw_k}_bits_per_dim"] = -(torch.logsumexp(log_p, 0) - math.log(iw_k))
        return out
