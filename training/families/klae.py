"""KL-regularised autoencoder with a spatial latent: the first stage of latent diffusion.

As in Stable Diffusion's autoencoder (Rombach et al., 2022): a convolutional encoder of
GroupNorm/SiLU residual blocks maps the image to a diagonal Gaussian over a small
``latent_channels``×h×w grid (each width after the first halves the resolution: 28×28 →
4×7×7, 32×32 → 4×8×8), and a mirrored decoder maps a latent back to pixels. The loss is
the reconstruction (L1 or MSE per pixel, on [-1, 1]) of a reparameterised sample plus
``kl_weight`` times the KL to N(0, I) per latent element. The weight is tiny: the KL only
keeps the latent from drifting in scale, it does not make the model a useful prior, so
this family has no sampler and reports reconstruction scores, not bits/dim.

A diffusion model wants latents of about unit variance, so when training completes the
family measures the standard deviation of the posterior means over the training split
and keeps ``latent_scale = 1 / std`` as a buffer: it is saved with the weights, and export
and the latent-diffusion trainer read it from there.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from latentserve.training.families.base import ImageModel, StepOutput
from latentserve.training.families.layers import ImageShape
from latentserve.training.families.unet import group_norm
from latentserve.training.likelihood import to_unit
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as config_dataclass
from torch import nn

LOGVAR_RANGE = (-30.0, 20.0)  # as in Stable Diffusion: keeps exp() finite


@config_dataclass(config=ConfigDict(extra="forbid"))
class KLAEConfig:
    """The ``[model]`` table: channels per resolution, latent size and the loss."""

    widths: list[int] = Field(default_factory=lambda: [32, 64, 64], min_length=2)
    depth: int = Field(default=1, gt=0)  # residual blocks per resolution
    groups: int = Field(default=8, gt=0)  # GroupNorm groups (fewer where widths need)
    latent_channels: int = Field(default=4, gt=0)
    kl_weight: float = Field(default=1e-6, ge=0)
    recon_loss: Literal["l1", "mse"] = "mse"


class ResBlock(nn.Module):
    """Two GroupNorm-SiLU-conv layers and a residual connection (1×1 where widths change)."""

    def __init__(self, c_in: int, c_out: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            group_norm(c_in, groups),
            nn.SiLU(),
            nn.Conv2d(c_in, c_out, 3, padding=1),
            group_norm(c_out, groups),
            nn.SiLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1),
        )
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


def _blocks(c_in: int, c_out: int, depth: int, groups: int) -> list[nn.Module]:
    return [ResBlock(c_in if i == 0 else c_out, c_out, groups) for i in range(depth)]


def _head(channels: int, out: int, groups: int) -> nn.Sequential:
    return nn.Sequential(group_norm(channels, groups), nn.SiLU(), nn.Conv2d(channels, out, 3, 1, 1))


class Encoder(nn.Module):
    """Image in [-1, 1] → posterior (mean, log-variance) stacked on channels."""

    def __init__(self, config: KLAEConfig, channels: int) -> None:
        super().__init__()
        widths, depth, groups = config.widths, config.depth, config.groups
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 3, padding=1)]
        for i, width in enumerate(widths):
            layers += _blocks(widths[max(i - 1, 0)], width, depth, groups)
            if i < len(widths) - 1:
                layers.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
        layers += [ResBlock(widths[-1], widths[-1], groups)]
        layers.append(_head(widths[-1], 2 * config.latent_channels, groups))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """Latent → image in [-1, 1] (unclamped): the encoder mirrored, nearest upsampling."""

    def __init__(self, config: KLAEConfig, channels: int) -> None:
        super().__init__()
        widths, depth, groups = config.widths[::-1], config.depth, config.groups
        layers: list[nn.Module] = [nn.Conv2d(config.latent_channels, widths[0], 3, padding=1)]
        layers += [ResBlock(widths[0], widths[0], groups)]
        for i, width in enumerate(widths):
            layers += _blocks(widths[max(i - 1, 0)], width, depth, groups)
            if i < len(widths) - 1:
                layers += [nn.Upsample(scale_factor=2.0), nn.Conv2d(width, width, 3, padding=1)]
        layers.append(_head(widths[-1], channels, groups))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class KLAutoencoder(ImageModel):
    """Deterministic ``encode`` (posterior mean) and ``decode``; no prior, so no sampler."""

    def __init__(self, config: KLAEConfig, image: ImageShape) -> None:
        super().__init__(image)
        factor = 2 ** (len(config.widths) - 1)
        if image.height % factor or image.width % factor:
            raise ValueError(
                f"image {image.height}x{image.width} must be divisible by {factor} for "
                f"{len(config.widths) - 1} downsamplings (one per width after the first)"
            )
        self.config = config
        self.latent_shape = [config.latent_channels, image.height // factor, image.width // factor]
        self.encoder = Encoder(config, image.channels)
        self.decoder = Decoder(config, image.channels)
        # 0 until ``calibrate`` has run: a half-trained run has no scale to hand on
        self.register_buffer("latent_scale", torch.zeros(()))

    def posterior(self, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image in [0, 1] → (mean, log-variance), each (batch, *latent_shape)."""
        mean, logvar = self.encoder(x01 * 2.0 - 1.0).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def encode(self, x01: torch.Tensor) -> torch.Tensor:
        """The deterministic code of an image in [0, 1]: the posterior mean (unscaled)."""
        return self.posterior(x01)[0]

    @torch.no_grad()
    def encode_split(self, images: torch.Tensor, batch_size: int) -> torch.Tensor:
        """A whole uint8 split → its (unscaled) codes, ``batch_size`` images at a time."""
        return torch.cat(
            [
                self.encode(to_unit(images[i : i + batch_size]))
                for i in range(0, len(images), batch_size)
            ]
        )

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """An (unscaled) latent → the image in [0, 1]."""
        return (self.decoder(z) * 0.5 + 0.5).clamp(0.0, 1.0)

    def trained_scale(self) -> float:
        """``latent_scale`` as a number; refuses a model whose training has not completed."""
        scale = float(self.latent_scale)
        if scale <= 0:
            raise ValueError(
                "the autoencoder has no latent scale yet: it is fitted when training "
                "completes (resume the run to its last step)"
            )
        return scale

    def _losses(
        self, x: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image reconstruction loss of a posterior sample and KL per latent element."""
        mean, logvar = self.posterior(to_unit(x))
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator)
        recon, target = self.decoder(z), to_unit(x) * 2.0 - 1.0
        loss = F.l1_loss if self.config.recon_loss == "l1" else F.mse_loss
        per_pixel = loss(recon, target, reduction="none")
        kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar)
        return per_pixel.flatten(1).mean(1), kl.flatten(1).mean(1)

    def training_step(
        self, x: torch.Tensor, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> StepOutput:
        recon, kl = self._losses(x, generator)
        loss = recon.mean() + self.config.kl_weight * kl.mean()
        metrics = {self.config.recon_loss: recon.mean().item(), "kl": kl.mean().item()}
        return StepOutput(loss=loss, metrics=metrics)

    def evaluate(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        iw_k: int = 1,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-image MSE and PSNR (dB, peak 1) of ``decode(encode(x))`` on [0, 1], and the
        KL per latent element. No likelihood: ``iw_k`` is ignored, as for DDPM."""
        x01 = to_unit(x)
        mean, logvar = self.posterior(x01)
        mse = (self.decode(mean) - x01).square().flatten(1).mean(1)
        kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar)
        return {
            "recon_mse": mse,
            "psnr_db": -10.0 * torch.log10(mse.clamp(min=1e-10)),
            "kl_per_latent_dim": kl.flatten(1).mean(1),
        }

    @torch.no_grad()
    def calibrate(self, train_images: torch.Tensor, batch_size: int) -> dict[str, float]:
        """Set ``latent_scale`` to 1 / std of the posterior means over ``train_images``
        (every element of every latent, as Stable Diffusion's scale factor)."""
        was_training = self.training
        self.eval()
        means = self.encode_split(train_images, batch_size).double()
        self.train(was_training)
        std = float(means.std())
        if not math.isfinite(std) or std <= 0:
            raise FloatingPointError(f"posterior means have std {std}: no latent scale")
        self.latent_scale.fill_(1.0 / std)
        return {"latent_scale": 1.0 / std, "latent_mean": float(means.mean()), "latent_std": std}
