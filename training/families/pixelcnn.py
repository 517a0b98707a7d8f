"""Gated PixelCNN over a discrete code map (van den Oord et al., 2016, "Conditional
Image Generation with PixelCNN Decoders").

Raster-order causality without the original PixelCNN's blind spot comes from two
stacks. The vertical stack sees every row above (and, inside the stack, the current
row); it reaches the horizontal stack only shifted down by one row, so position (i, j)
receives rows < i. The horizontal stack sees the current row up to column j; the first
layer is "type A": its input is shifted right by one column, so a position never sees
its own code. Masking is done by cropping kernels and padding, not by multiplying
weights with masks, which is both cheaper and exactly causal.

Each layer is gated, ``tanh(a) * sigmoid(b)``, with an optional conditioning tensor
(N, Ccond, h, w) added to both halves through a 1×1 conv: VQ-VAE-2's bottom prior
conditions on the (upsampled) top code map that way. An optional causal self-attention
block (VQ-VAE-2's top prior) lets late positions see the whole past at once.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def shift_down(x: torch.Tensor) -> torch.Tensor:
    """Row i of the result is row i - 1 of ``x`` (zeros in row 0)."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


def shift_right(x: torch.Tensor) -> torch.Tensor:
    """Column j of the result is column j - 1 of ``x`` (zeros in column 0)."""
    return F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]


def _gate(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One gated layer of both stacks. ``first`` makes it type A (excludes position p)."""

    def __init__(self, channels: int, kernel: int, cond_channels: int, first: bool) -> None:
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"kernel size must be odd, got {kernel}")
        self.half, self.first = kernel // 2, first
        self.vertical = nn.Conv2d(channels, 2 * channels, (self.half + 1, kernel))
        self.vertical_to_horizontal = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.horizontal = nn.Conv2d(channels, 2 * channels, (1, self.half + 1))
        self.horizontal_out = nn.Conv2d(channels, channels, 1)
        self.cond = nn.Conv2d(cond_channels, 2 * channels, 1) if cond_channels else None

    def forward(
        self, v: torch.Tensor, h: torch.Tensor, cond: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.half
        v_pre = self.vertical(F.pad(v, (k, k, k, 0)))  # rows i-k..i, columns j-k..j+k
        h_in = shift_right(h) if self.first else h
        h_pre = self.horizontal(F.pad(h_in, (k, 0, 0, 0)))  # columns j-k..j of row i
        h_pre = h_pre + self.vertical_to_horizontal(shift_down(v_pre))  # rows < i only
        if self.cond is not None:
            if cond is None:
                raise ValueError("this PixelCNN is conditional: pass its conditioning tensor")
            c = self.cond(cond)
            v_pre, h_pre = v_pre + c, h_pre + c
        h_out = self.horizontal_out(_gate(h_pre))
        # The type-A layer's input holds the code at p itself: no residual from it.
        return _gate(v_pre), h_out if self.first else h + h_out


class CausalSelfAttention(nn.Module):
    """Single-head attention over raster order; a position attends to itself and before.

    Used on horizontal-stack features, which at p already depend only on codes before p,
    so attending to p itself keeps the map causal.
    """

    def __init__(self, channels: int, height: int, width: int) -> None:
        super().__init__()
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        n = height * width
        self.register_buffer("allowed", torch.ones(n, n, dtype=torch.bool).tril(), persistent=False)
        self.scale = 1.0 / math.sqrt(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).flatten(2).chunk(3, dim=1)  # each (N, C, L)
        scores = (q.transpose(1, 2) @ k) * self.scale  # (N, L query, L key)
        weights = scores.masked_fill(~self.allowed, float("-inf")).softmax(-1)
        attended = (v @ weights.transpose(1, 2)).view_as(x)
        return x + self.out(attended)


class GatedPixelCNN(nn.Module):
    """Codes (N, h, w) [+ conditioning (N, Ccond, h, w)] → logits (N, K, h, w).

    The logits at a position depend only on codes before it in raster order.
    """

    def __init__(
        self,
        num_codes: int,
        height: int,
        width: int,
        *,
        channels: int = 64,
        layers: int = 5,
        kernel: int = 3,
        cond_channels: int = 0,
        attention: bool = False,
    ) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError("a PixelCNN needs at least one layer")
        self.embed = nn.Embedding(num_codes, channels)
        self.layers = nn.ModuleList(
            GatedLayer(channels, kernel, cond_channels, first=i == 0) for i in range(layers)
        )
        self.attention = CausalSelfAttention(channels, height, width) if attention else None
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
            nn.ReLU(),
            nn.Conv2d(channels, num_codes, 1),
        )

    def forward(self, codes: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.logits_from_embedding(self.embed(codes).permute(0, 3, 1, 2), cond)

    def logits_from_embedding(
        self, x: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The network after the embedding (exposed so tests can take input gradients)."""
        v, h = x, x
        middle = len(self.layers) // 2
        for i, layer in enumerate(self.layers):
            v, h = layer(v, h, cond)
            if self.attention is not None and i == middle:
                h = self.attention(h)
        return self.head(h)

    def nats(self, codes: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``-log p(codes)`` per item (nats), summed over positions."""
        log_probs = self.forward(codes, cond).log_softmax(1)
        picked = log_probs.gather(1, codes.unsqueeze(1))
        return -picked.flatten(1).sum(1)
