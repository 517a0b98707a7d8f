"""Differentiable augmentation for GANs on small data (DiffAugment; Zhao et al., 2020).

A discriminator trained on a few thousand images memorises them within a few epochs; its
feedback to the generator then stops being about digits and the generator collapses onto
whatever still fools it. DiffAugment shows the discriminator only *augmented* images,
real and fake alike, in both players' phases, so it cannot memorise; because every
operation is differentiable, the generator's gradient flows through the augmentation.
Applied to both sides the augmentations do not leak: the generator gains nothing by
drawing translated or cut-out digits, since the discriminator sees the real ones
translated and cut out the same way.

The three policies and their constants are the paper's (its reference code): ``color``
(random brightness, saturation and contrast per image), ``translation`` (shift by up to
1/8 of the size, zero-padded) and ``cutout`` (one zeroed square of half the size per
image). Images are in [-1, 1], so zero is mid-grey. All randomness comes from the
caller's ``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

Policy = Literal["color", "translation", "cutout"]
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def _uniform(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One U(0, 1) draw per image, shaped to broadcast over (C, H, W)."""
    return torch.rand(x.shape[0], 1, 1, 1, generator=generator).to(x)


def color(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Brightness ± 0.5, saturation ×[0, 2], contrast ×[0.5, 1.5], per image."""
    x = x + (_uniform(x, generator) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_uniform(x, generator) * 2.0) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x, generator) + 0.5) + mean


def translation(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by a whole number of pixels, up to 1/8 of its size, filling with 0."""
    b, _, h, w = x.shape
    max_dy, max_dx = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
    dy = torch.randint(-max_dy, max_dy + 1, (b, 1, 1), generator=generator)
    dx = torch.randint(-max_dx, max_dx + 1, (b, 1, 1), generator=generator)
    batch, rows, cols = torch.meshgrid(
        torch.arange(b), torch.arange(h), torch.arange(w), indexing="ij"
    )
    # index into a copy padded by one zero pixel: out-of-range reads land on the padding
    rows = (rows + dy + 1).clamp(0, h + 1)
    cols = (cols + dx + 1).clamp(0, w + 1)
    padded = torch.nn.functional.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)
    return padded[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Zero one square of half the image's size per image, at a random centre."""
    b, _, h, w = x.shape
    size_h, size_w = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    top = torch.randint(0, h + (1 - size_h % 2), (b, 1, 1), generator=generator)
    left = torch.randint(0, w + (1 - size_w % 2), (b, 1, 1), generator=generator)
    batch, rows, cols = torch.meshgrid(
        torch.arange(b), torch.arange(size_h), torch.arange(size_w), indexing="ij"
    )
    rows = (rows + top - size_h // 2).clamp(0, h - 1)
    cols = (cols + left - size_w // 2).clamp(0, w - 1)
    mask = torch.ones(b, h, w, dtype=x.dtype, device=x.device)
    mask[batch, rows, cols] = 0
    return x * mask.unsqueeze(1)


AUGMENTATIONS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(
    x: torch.Tensor, policies: Sequence[Policy], generator: torch.Generator
) -> torch.Tensor:
    """``x`` (B, C, H, W) in [-1, 1] through each policy in turn (none: ``x`` itself)."""
    for policy in policies:
        x = AUGMENTATIONS[policy](x, generator)
    return x
