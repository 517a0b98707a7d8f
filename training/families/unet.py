"""The denoising UNet of the diffusion family.

Residual blocks (GroupNorm, SiLU, 3×3 convs) receive a per-row embedding of the timestep
(and class label), so every row of a batch can sit at its own timestep, which is what
lets the server batch rows of different requests at different steps. Each level but the
last halves the resolution; the lowest resolution adds self-attention; the up path
concatenates the skip of the same level. Upsampling goes to the skip's exact size, so
odd sizes (28 → 14 → 7) work as well as powers of two.

A text-conditioned UNet (``context_dim`` > 0) also reads a sequence of token states by
cross-attention, as Stable Diffusion's does: in the middle and after the
``cross_levels`` lowest levels of both paths, where positions are few and attention cheap.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= ``groups`` that divides ``channels``."""
    return nn.GroupNorm(math.gcd(groups, channels), channels)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features (batch, dim) of float timesteps, as in the Transformer."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ResBlock(nn.Module):
    """Two norm-SiLU-conv layers with the embedding added per channel in between."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int) -> None:
        super().__init__()
        self.norm1 = group_norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = group_norm(c_out, groups)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head self-attention over all positions, with a residual connection."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        self.scale = channels**-0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        weights = torch.softmax(q.transpose(1, 2) @ k * self.scale, dim=-1)  # (b, hw, hw)
        out = (v @ weights.transpose(1, 2)).reshape(b, c, h, w)
        return x + self.proj(out)


class CrossAttention(nn.Module):
    """Multi-head attention from every position to the tokens of a context sequence.

    Queries come from the normalised feature map, keys and values from the context
    (``context_dim`` wide); tokens whose mask is 0 (padding) get no weight, so the
    prediction cannot depend on what the padding holds. Residual, like ``SelfAttention``.
    """

    def __init__(self, channels: int, context_dim: int, heads: int, groups: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels do not split into {heads} heads")
        self.heads = heads
        self.norm = group_norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.kv = nn.Linear(context_dim, 2 * channels)
        self.proj = nn.Conv2d(channels, channels, 1)
        self.scale = (channels // heads) ** -0.5

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        heads, dim = self.heads, c // self.heads
        q = self.q(self.norm(x)).reshape(b, heads, dim, h * w).transpose(2, 3)  # (b, H, hw, d)
        k, v = self.kv(context).reshape(b, -1, 2, heads, dim).permute(2, 0, 3, 1, 4).unbind(0)
        logits = q @ k.transpose(2, 3) * self.scale  # (b, H, hw, tokens)
        ignored = (mask == 0)[:, None, None, :]
        weights = torch.softmax(logits.masked_fill(ignored, -1e9), dim=-1)
        out = (weights @ v).transpose(2, 3).reshape(b, c, h, w)
        return x + self.proj(out)


class Level(nn.Module):
    """The residual blocks of one resolution; the first maps ``c_in`` to ``c_out``; then
    cross-attention to the context where the level has it."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        depth: int,
        emb_dim: int,
        groups: int,
        cross: CrossAttention | None = None,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            ResBlock(c_in if i == 0 else c_out, c_out, emb_dim, groups) for i in range(depth)
        )
        self.cross = cross

    def forward(
        self, x: torch.Tensor, emb: torch.Tensor, context: tuple[torch.Tensor, torch.Tensor] | None
    ) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, emb)
        if self.cross is not None and context is not None:
            x = self.cross(x, *context)
        return x


class UNet(nn.Module):
    """(x_t, t, label, context) → a tensor of x_t's shape (ε or v, as the family trains it).

    ``widths`` gives the channels of each resolution level, ``depth`` the residual blocks
    per level. ``num_classes`` > 0 adds a label embedding with one extra row, index
    ``num_classes``, for "no label" (classifier-free guidance). ``context_dim`` > 0 adds
    cross-attention (``heads`` heads) to token states of that width, in the middle and at
    the ``cross_levels`` lowest levels.
    """

    def __init__(
        self,
        channels: int,
        widths: list[int],
        depth: int,
        groups: int,
        num_classes: int = 0,
        context_dim: int = 0,
        heads: int = 1,
        cross_levels: int = 0,
    ) -> None:
        super().__init__()
        base = widths[0]
        emb_dim = 4 * base
        self.time_mlp = nn.Sequential(
            nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.label_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.conv_in = nn.Conv2d(channels, base, 3, padding=1)
        levels = len(widths)

        def cross(c: int, level: int) -> CrossAttention | None:
            if not context_dim or level < levels - cross_levels:
                return None
            return CrossAttention(c, context_dim, heads, groups)

        ins = [base, *widths[:-1]]
        self.down = nn.ModuleList(
            Level(c_in, c, depth, emb_dim, groups, cross(c, i))
            for i, (c_in, c) in enumerate(zip(ins, widths, strict=True))
        )
        self.downsample = nn.ModuleList(
            nn.Conv2d(c, c, 3, stride=2, padding=1) for c in widths[:-1]
        )
        low = widths[-1]
        self.mid1 = ResBlock(low, low, emb_dim, groups)
        self.attention = SelfAttention(low, groups)
        self.mid_cross = CrossAttention(low, context_dim, heads, groups) if context_dim else None
        self.mid2 = ResBlock(low, low, emb_dim, groups)
        # up path, lowest level first: input = current channels + the level's skip
        outs = widths[::-1]
        currents = [low, *outs[:-1]]
        self.up = nn.ModuleList(
            Level(cur + c, c, depth, emb_dim, groups, cross(c, levels - 1 - i))
            for i, (cur, c) in enumerate(zip(currents, outs, strict=True))
        )
        self.upsample = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for c in currents[1:])
        self.norm_out = group_norm(base, groups)
        self.conv_out = nn.Conv2d(base, channels, 3, padding=1)

    def embed(self, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.conv_in.out_channels))
        if self.label_emb is not None:
            if labels is None:
                raise ValueError("a class-conditional UNet needs labels")
            emb = emb + self.label_emb(labels)
        return emb

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        labels: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``context`` (batch, tokens, context_dim) and its 0/1 ``context_mask`` (batch,
        tokens) are required by, and only used by, a text-conditioned UNet."""
        emb = self.embed(t, labels)
        ctx = None
        if self.mid_cross is not None:
            if context is None or context_mask is None:
                raise ValueError("a text-conditioned UNet needs context states and their mask")
            ctx = (context, context_mask)
        h = self.conv_in(x)
        skips = []
        for i, level in enumerate(self.down):
            h = level(h, emb, ctx)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.attention(self.mid1(h, emb))
        if self.mid_cross is not None and ctx is not None:
            h = self.mid_cross(h, *ctx)
        h = self.mid2(h, emb)
        for i, level in enumerate(self.up):
            skip = skips.pop()
            if i > 0:  # back to the skip's resolution
                h = self.upsample[i - 1](F.interpolate(h, size=skip.shape[-2:], mode="nearest"))
            h = level(torch.cat([h, skip], dim=1), emb, ctx)
        return self.conv_out(F.silu(self.norm_out(h)))
