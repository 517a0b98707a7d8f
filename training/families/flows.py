"""Invertible layers for normalizing flows (Glow, RealNVP, NICE).

Every layer maps ``x`` to ``(y, logdet)`` with ``logdet = log|det dy/dx|`` per item, and
``reverse(y)`` returns ``x`` exactly (up to float rounding). Tensors are N×C×H×W; the
layers act on channels, so the same code serves any image size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOG_2PI = math.log(2.0 * math.pi)
RAW_BOUND = 4.0  # affine coupling: scale = sigmoid(2 + 4 tanh(raw / 4)) in (0.119, 0.998)


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """Space to depth: C×H×W → 4C×H/2×W/2, each 2×2 patch becomes 4 channels (volume-preserving)."""
    n, c, h, w = x.shape
    x = x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, 4 * c, h // 2, w // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    """The inverse of ``squeeze``."""
    n, c, h, w = x.shape
    x = x.view(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c // 4, 2 * h, 2 * w)


def gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor, logs: torch.Tensor) -> torch.Tensor:
    """Per-item ``log N(z; mean, exp(logs)^2)`` summed over all but the batch dimension."""
    log_p = -0.5 * (LOG_2PI + 2.0 * logs + (z - mean).square() * torch.exp(-2.0 * logs))
    return log_p.flatten(1).sum(1)


class ActNorm(nn.Module):
    """Per-channel affine ``y = (x + bias) * exp(logs)``, initialised from the first batch.

    The first forward pass in training mode sets ``bias`` and ``logs`` so that batch has
    zero mean and unit variance per channel (Glow's data-dependent init). ``initialized``
    is a buffer, so it travels in the checkpoint: a loaded or resumed model is never
    re-initialised from whatever batch it happens to see next.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
        self.bias.copy_(-mean)
        self.logs.copy_(-torch.log(std + 1e-6))
        self.initialized.fill_(True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not bool(self.initialized):
            self.initialize(x)
        logdet = x.shape[2] * x.shape[3] * self.logs.sum()
        return (x + self.bias) * torch.exp(self.logs), logdet.expand(x.shape[0])

    def reverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.logs) - self.bias


class InvConv1x1(nn.Module):
    """Invertible 1×1 convolution ``W = P L (U + diag(sign * exp(log_s)))`` (LU form).

    ``P`` (a permutation) and ``sign`` are fixed; ``L`` is lower with a unit diagonal and
    ``U`` strictly upper. Then ``log|det W| = sum(log_s)`` costs O(C) instead of O(C³), and
    the conv's log-determinant is ``H * W * sum(log_s)``. Starts as a random rotation.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        rotation = torch.linalg.qr(torch.randn(channels, channels))[0]
        p, lower, upper = torch.linalg.lu(rotation)
        s = torch.diagonal(upper)
        self.register_buffer("p", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("eye", torch.eye(channels))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(s.abs()))

    def weight(self) -> torch.Tensor:
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.p @ lower @ upper

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.weight()
        logdet = x.shape[2] * x.shape[3] * self.log_s.sum()
        return F.conv2d(x, w[:, :, None, None]), logdet.expand(x.shape[0])

    def reverse(self, y: torch.Tensor) -> torch.Tensor:
        w_inv = torch.linalg.inv(self.weight())
        return F.conv2d(y, w_inv[:, :, None, None])


class Permute(nn.Module):
    """A fixed channel permutation (``reverse`` as in RealNVP, or a seeded ``shuffle``)."""

    def __init__(self, channels: int, kind: str) -> None:
        super().__init__()
        if kind == "reverse":
            order = torch.arange(channels - 1, -1, -1)
        elif kind == "shuffle":
            order = torch.randperm(channels)
        else:
            raise ValueError(f"unknown fixed permutation {kind!r}; use 'reverse' or 'shuffle'")
        self.register_buffer("order", order)
        self.register_buffer("inverse_order", torch.argsort(order))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, self.order], x.new_zeros(x.shape[0])

    def reverse(self, y: torch.Tensor) -> torch.Tensor:
        return y[:, self.inverse_order]


def zero_conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A 3×3 conv that outputs zeros at first, so a new coupling or prior starts as identity."""
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class Coupling(nn.Module):
    """Coupling layer: the first half of the channels predicts a transform of the second.

    ``additive`` (NICE): ``y_b = x_b + t(x_a)``, volume-preserving. ``affine`` (RealNVP,
    Glow): ``y_b = (x_b + t(x_a)) * s(x_a)`` with Glow's ``s = sigmoid(raw + 2)``, which
    starts near 0.88 and stays below 1, keeping early training stable. ``raw`` is first
    soft-clamped to (-4, 4) (``4 tanh(raw / 4)``, about ``raw`` near 0) so ``s > 0.119``:
    unclamped, latents a little off the training data made the network predict scales
    near 1e-9, and the inverse, which divides by ``s``, overflowed to inf/NaN when sampling.
    ``x_a`` passes unchanged, so the inverse needs only the same network on ``y_a``.
    """

    def __init__(self, channels: int, hidden: int, kind: str) -> None:
        super().__init__()
        if kind not in ("additive", "affine"):
            raise ValueError(f"unknown coupling {kind!r}; use 'additive' or 'affine'")
        self.affine = kind == "affine"
        self.split = channels // 2
        out = channels - self.split
        self.net = nn.Sequential(
            nn.Conv2d(self.split, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.ReLU(),
            zero_conv(hidden, 2 * out if self.affine else out),
        )

    def _shift_scale(self, x_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.net(x_a)
        if not self.affine:
            return h, None
        shift, raw = h.chunk(2, dim=1)
        raw = RAW_BOUND * torch.tanh(raw / RAW_BOUND)
        return shift, torch.sigmoid(raw + 2.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_a, x_b = x[:, : self.split], x[:, self.split :]
        shift, scale = self._shift_scale(x_a)
        if scale is None:
            return torch.cat([x_a, x_b + shift], 1), x.new_zeros(x.shape[0])
        y_b = (x_b + shift) * scale
        return torch.cat([x_a, y_b], 1), torch.log(scale).flatten(1).sum(1)

    def reverse(self, y: torch.Tensor) -> torch.Tensor:
        y_a, y_b = y[:, : self.split], y[:, self.split :]
        shift, scale = self._shift_scale(y_a)
        x_b = y_b - shift if scale is None else y_b / scale - shift
        return torch.cat([y_a, x_b], 1)


class FlowStep(nn.Module):
    """One step of flow: [actnorm] → channel mixing → coupling."""

    def __init__(
        self, channels: int, hidden: int, coupling: str, permutation: str, actnorm: bool
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [ActNorm(channels)] if actnorm else []
        if permutation == "invconv":
            layers.append(InvConv1x1(channels))
        else:
            layers.append(Permute(channels, permutation))
        layers.append(Coupling(channels, hidden, coupling))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def reverse(self, y: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            y = layer.reverse(y)
        return y


class SplitPrior(nn.Module):
    """Factor out half the channels; their Gaussian prior is conditioned on the kept half.

    ``h, z = x.chunk(2)``: ``z`` leaves the flow here with ``N(mean(h), exp(logs(h))^2)``,
    where a zero-initialised conv predicts mean and log-scale (so it starts as N(0, 1)).
    ``z = mean + exp(logs) * temperature * eps`` when sampling: the noise is an input.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.keep = channels // 2
        self.prior = zero_conv(self.keep, 2 * (channels - self.keep))

    def mean_logs(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logs = self.prior(h).chunk(2, dim=1)
        return mean, logs

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x → (kept half h, factored-out z, log p(z | h))."""
        h, z = x[:, : self.keep], x[:, self.keep :]
        mean, logs = self.mean_logs(h)
        return h, z, gaussian_log_prob(z, mean, logs)

    def reverse(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([h, z], 1)

    def sample_z(
        self, h: torch.Tensor, eps: torch.Tensor, temperature: torch.Tensor
    ) -> torch.Tensor:
        mean, logs = self.mean_logs(h)
        return mean + torch.exp(logs) * temperature.view(-1, 1, 1, 1) * eps
