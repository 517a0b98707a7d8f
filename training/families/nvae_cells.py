"""Building blocks of the NVAE family (Vahdat & Kautz, 2020), scaled down for small images.

- ``SpectralConv2d``: a conv that carries its own power-iteration vectors (buffers, so
  they travel in the checkpoint and a resumed run continues the same iteration).
- ``EncoderCell``: BN-Swish-Conv3x3-BN-Swish-Conv3x3-SE on a residual branch (paper Fig. 3b).
- ``DecoderCell``: BN-Conv1x1(expand)-BN-Swish-DWConv5x5-BN-Swish-Conv1x1-BN-SE (Fig. 3a):
  the depthwise conv gives a large receptive field cheaply in the wide expanded space.
- ``Normal``: a diagonal Gaussian with the log-densities and KL the losses need, and
  ``residual_posterior``: NVAE's ``q = N(mu_p + dmu, sigma_p * dsigma)``.

Residual branches are added with a 0.1 factor (as NVAE does) so a deep stack starts near
the identity and trains stably without warm-starting tricks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

LOG_2PI = math.log(2.0 * math.pi)
RESIDUAL_SCALE = 0.1
LOG_SIGMA_BOUND = 5.0


def soft_clamp(x: torch.Tensor, bound: float = LOG_SIGMA_BOUND) -> torch.Tensor:
    """``bound * tanh(x / bound)``: keeps log-scales finite without a dead gradient."""
    return bound * torch.tanh(x / bound)


class SpectralConv2d(nn.Conv2d):
    """Conv2d whose weight (reshaped to out × in·k·k) has a power-iteration estimate of
    its largest singular value, for NVAE's spectral regularisation."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        rows, cols = self.weight.shape[0], self.weight[0].numel()
        self.register_buffer("sn_u", F.normalize(torch.randn(rows), dim=0))
        self.register_buffer("sn_v", F.normalize(torch.randn(cols), dim=0))

    def spectral_norm(self, iterations: int = 1) -> torch.Tensor:
        """``u^T W v`` after ``iterations`` power-iteration updates of the buffers.

        The vectors are updated without gradient; the returned estimate is
        differentiable in ``W``, so ``lambda * estimate`` shrinks the top singular value.
        """
        w = self.weight.flatten(1)
        if iterations:
            with torch.no_grad():
                u, v = self.sn_u, self.sn_v
                for _ in range(iterations):
                    v = F.normalize(w.t() @ u, dim=0, eps=1e-8)
                    u = F.normalize(w @ v, dim=0, eps=1e-8)
                self.sn_u.copy_(u)
                self.sn_v.copy_(v)
        return torch.dot(self.sn_u, w @ self.sn_v)


def conv(in_ch: int, out_ch: int, k: int, stride: int = 1, groups: int = 1, bias: bool = True):
    return SpectralConv2d(in_ch, out_ch, k, stride=stride, padding=k // 2, groups=groups, bias=bias)


class SqueezeExcite(nn.Module):
    """Channel gating from global average statistics (Hu et al., 2018)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.gate = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x.mean(dim=(2, 3)))[:, :, None, None]


class EncoderCell(nn.Module):
    """Residual encoder cell; ``stride=2`` halves the resolution (skip: strided 1x1 conv)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.skip = (
            nn.Identity() if in_ch == out_ch and stride == 1 else conv(in_ch, out_ch, 1, stride)
        )
        self.branch = nn.Sequential(
            nn.BatchNorm2d(in_ch),
            nn.SiLU(),
            conv(in_ch, out_ch, 3, stride),
            nn.BatchNorm2d(out_ch),
            nn.SiLU(),
            conv(out_ch, out_ch, 3),
            SqueezeExcite(out_ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + RESIDUAL_SCALE * self.branch(x)


class DecoderCell(nn.Module):
    """Residual decoder cell with an ``expand``-times wider depthwise-separable middle;
    ``upsample=True`` doubles the resolution first (nearest neighbour)."""

    def __init__(
        self, in_ch: int, out_ch: int, expand: int, kernel: int = 5, upsample: bool = False
    ) -> None:
        super().__init__()
        wide = expand * out_ch
        self.upsample = upsample
        self.skip = nn.Identity() if in_ch == out_ch else conv(in_ch, out_ch, 1)
        self.branch = nn.Sequential(
            nn.BatchNorm2d(in_ch),
            conv(in_ch, wide, 1),
            nn.BatchNorm2d(wide),
            nn.SiLU(),
            conv(wide, wide, kernel, groups=wide),  # depthwise; the 1x1s make it separable
            nn.BatchNorm2d(wide),
            nn.SiLU(),
            conv(wide, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            SqueezeExcite(out_ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.skip(x) + RESIDUAL_SCALE * self.branch(x)


class ParamHead(nn.Module):
    """ELU then conv to ``2 * latent`` channels: (mean, log-scale) of a Gaussian."""

    def __init__(self, in_ch: int, latent: int, k: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.ELU(), conv(in_ch, 2 * latent, k))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_sigma = self.net(x).chunk(2, dim=1)
        return mu, soft_clamp(log_sigma)


@dataclass
class Normal:
    """Diagonal Gaussian; every method sums over all but the batch dimension."""

    mu: torch.Tensor
    log_sigma: torch.Tensor

    def at(self, eps: torch.Tensor, temperature: torch.Tensor | float = 1.0) -> torch.Tensor:
        """The point ``mu + temperature * sigma * eps`` (reparameterised sample)."""
        return self.mu + temperature * torch.exp(self.log_sigma) * eps

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        scaled = (z - self.mu) * torch.exp(-self.log_sigma)
        return (-0.5 * (scaled.square() + LOG_2PI) - self.log_sigma).flatten(1).sum(1)

    def kl(self, other: Normal) -> torch.Tensor:
        """Analytic ``KL(self || other)`` per item, in nats."""
        ratio = torch.exp(2.0 * (self.log_sigma - other.log_sigma))
        mean_term = (self.mu - other.mu).square() * torch.exp(-2.0 * other.log_sigma)
        kl = 0.5 * (ratio + mean_term - 1.0) - (self.log_sigma - other.log_sigma)
        return kl.flatten(1).sum(1)


def residual_posterior(prior: Normal, dmu: torch.Tensor, dlog_sigma: torch.Tensor) -> Normal:
    """``q = N(mu_p + dmu, sigma_p * exp(dlog_sigma))``: the encoder only has to say how
    the posterior differs from the prior, and KL(q||p) no longer depends on the prior's
    own parameters beyond ``dmu / sigma_p`` (NVAE Sec. 3.2)."""
    return Normal(prior.mu + dmu, prior.log_sigma + dlog_sigma)
