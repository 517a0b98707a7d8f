"""Convolutional encoder and decoder shared by the latent families.

The architecture follows the image from the config: each width in ``widths`` is one
stride-2 stage, so a 28×28×1 and a 32×32×3 image take the same code path and only the
flattened size changes. Height and width must be divisible by ``2 ** len(widths)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as config_dataclass
from torch import nn


@config_dataclass(config=ConfigDict(extra="forbid"))
class ConvConfig:
    """Sizes of the conv encoder/decoder; the ``[model]`` table of a training config."""

    latent_dim: int = Field(default=16, gt=0)
    encoder_widths: list[int] = field(default_factory=lambda: [32, 64])
    decoder_widths: list[int] = field(default_factory=lambda: [32, 64])
    encoder_hidden: int = Field(default=256, gt=0)
    decoder_hidden: int = Field(default=256, gt=0)


@dataclass(frozen=True)
class ImageShape:
    """Per-item image shape the models are built for (C, H, W)."""

    channels: int
    height: int
    width: int

    @property
    def dims(self) -> int:
        return self.channels * self.height * self.width


def _bottom(image: ImageShape, stages: int) -> tuple[int, int]:
    factor = 2**stages
    if stages < 1 or image.height % factor or image.width % factor:
        raise ValueError(
            f"image {image.height}x{image.width} must be divisible by 2**{stages} = {factor} "
            f"for {stages} stride-2 stages (one per width)"
        )
    return image.height // factor, image.width // factor


class ConvEncoder(nn.Module):
    """Image in [0, 1] → a flat vector of ``out_features`` (code or posterior parameters)."""

    def __init__(
        self, image: ImageShape, widths: list[int], hidden: int, out_features: int
    ) -> None:
        super().__init__()
        h, w = _bottom(image, len(widths))
        layers: list[nn.Module] = []
        in_ch = image.channels
        for width in widths:
            layers += [nn.Conv2d(in_ch, width, 4, stride=2, padding=1), nn.SiLU()]
            in_ch = width
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Sequential(
            nn.Linear(in_ch * h * w, hidden), nn.SiLU(), nn.Linear(hidden, out_features)
        )

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x01 * 2.0 - 1.0))


class ConvDecoder(nn.Module):
    """Latent → per-pixel (loc, log_scale) of the discretized logistic, each C×H×W."""

    def __init__(self, image: ImageShape, widths: list[int], hidden: int, latent_dim: int) -> None:
        super().__init__()
        self.image = image
        h, w = _bottom(image, len(widths))
        top = widths[-1]
        self.project = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, top * h * w),
            nn.SiLU(),
            nn.Unflatten(1, (top, h, w)),
        )
        layers: list[nn.Module] = []
        in_ch = top
        for width in reversed(widths):
            layers += [nn.ConvTranspose2d(in_ch, width, 4, stride=2, padding=1), nn.SiLU()]
            in_ch = width
        layers.append(nn.Conv2d(in_ch, 2 * image.channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.body(self.project(z))
        loc, log_scale = out.chunk(2, dim=1)
        return loc + 0.5, log_scale - 3.0  # start near mid-grey with a few-level spread
