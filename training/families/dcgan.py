"""DCGAN (Radford et al., 2016): transposed-conv generator, strided-conv discriminator.

The generator maps ``z ~ N(0, I)`` through a linear layer to a ``widths[0]`` × H/2^k ×
W/2^k map and doubles the resolution ``k = len(g_widths)`` times with 4×4 transposed
convolutions (batch norm and ReLU between, tanh at the end). The discriminator mirrors it
with 4×4 stride-2 convolutions and leaky ReLUs (batch norm on all but the first) and a
linear logit. Trained by the shared non-saturating game (``gan.AdversarialModel``).

The exported generator is the EMA one (``gan.AdversarialModel``) in eval mode, so an image
depends on its own ``z`` only, never on its batch. Its batch-norm statistics are
re-estimated once training ends (``calibrate``: "standing statistics", as BigGAN does for
its averaged generator): the running statistics it copies from the trained generator
belong to other weights than the averaged ones.
"""

from __future__ import annotations

import torch
from latentserve.training.families.ema import EMA
from latentserve.training.families.gan import AdversarialModel, GANConfig
from latentserve.training.families.layers import ImageShape
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as config_dataclass
from torch import nn

STANDING_STATS_SEED = 0


@config_dataclass(config=ConfigDict(extra="forbid"))
class DCGANConfig(GANConfig):
    """The ``[model]`` table: widths of both networks plus the shared GAN settings."""

    g_widths: list[int] = Field(default_factory=lambda: [128, 64], min_length=1)
    d_widths: list[int] = Field(default_factory=lambda: [64, 128], min_length=1)
    standing_stat_batches: int = Field(default=20, gt=0)  # z batches for the EMA's BN stats


def start_size(image: ImageShape, doublings: int) -> tuple[int, int]:
    """The first feature map's (h, w) from which ``doublings`` ×2 steps reach the image."""
    factor = 2**doublings
    if image.height % factor or image.width % factor:
        raise ValueError(
            f"image {image.height}x{image.width} must be divisible by 2**{doublings} "
            f"(one doubling per generator width)"
        )
    return image.height // factor, image.width // factor


class DCGenerator(nn.Module):
    """``z`` (B, z_dim) → image (B, C, H, W) in [-1, 1]."""

    def __init__(self, z_dim: int, widths: list[int], image: ImageShape) -> None:
        super().__init__()
        self.h0, self.w0 = start_size(image, len(widths))
        self.width0 = widths[0]
        self.project = nn.Linear(z_dim, widths[0] * self.h0 * self.w0, bias=False)
        layers: list[nn.Module] = [nn.BatchNorm2d(widths[0]), nn.ReLU()]
        for width_in, width_out in zip(widths, widths[1:], strict=False):
            layers += [
                nn.ConvTranspose2d(width_in, width_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(width_out),
                nn.ReLU(),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], image.channels, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).view(-1, self.width0, self.h0, self.w0)
        return self.body(x)


class DCDiscriminator(nn.Module):
    """Image (B, C, H, W) in [-1, 1] → one logit per image (per pack of ``pack`` images
    stacked along C, see ``gan.pack_images``)."""

    def __init__(self, widths: list[int], image: ImageShape, pack: int = 1) -> None:
        super().__init__()
        h, w = start_size(image, len(widths))
        layers: list[nn.Module] = []
        width_in = image.channels * pack
        for i, width in enumerate(widths):
            layers.append(nn.Conv2d(width_in, width, 4, 2, 1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.LeakyReLU(0.2))
            width_in = width
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(width_in * h * w, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).squeeze(1)


class DCGAN(AdversarialModel):
    def __init__(self, config: DCGANConfig, image: ImageShape) -> None:
        super().__init__(config, image)
        self.config = config
        self.generator = DCGenerator(config.z_dim, config.g_widths, image)
        self.discriminator = DCDiscriminator(config.d_widths, image, config.pack)
        self.ema = EMA(self.generator, config.ema_decay)

    @property
    def g(self) -> nn.Module:
        return self.generator

    @property
    def d(self) -> nn.Module:
        return self.discriminator

    def fake_batch(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.generator(torch.randn(n, self.config.z_dim, generator=generator))

    @torch.no_grad()
    def calibrate(self, train_images: torch.Tensor, batch_size: int) -> dict[str, float]:
        """Standing statistics: the EMA generator's batch-norm mean and variance, averaged
        over ``standing_stat_batches`` batches of its own activations (fixed seed)."""
        shadow = self.ema.shadow
        norms = [m for m in shadow.modules() if isinstance(m, nn.BatchNorm2d)]
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average over the batches below
        shadow.train()
        generator = torch.Generator().manual_seed(STANDING_STATS_SEED)
        for _ in range(self.config.standing_stat_batches):
            shadow(torch.randn(batch_size, self.config.z_dim, generator=generator))
        for norm in norms:
            norm.momentum = 0.1
        shadow.train(self.training)
        return {"standing_stat_images": float(batch_size * self.config.standing_stat_batches)}
