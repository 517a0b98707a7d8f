"""Denoising diffusion (DDPM, Ho et al. 2020) with a UNet, ε- or v-prediction, EMA
weights and optional classifier-free guidance.

Pixels are mapped from the 8-bit levels to [-1, 1]. Training draws a timestep t, noise ε
and forms ``x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε``; the UNet predicts ε, or
``v = sqrt(ᾱ_t) ε - sqrt(1 - ᾱ_t) x_0`` (Salimans & Ho, 2022), under a plain MSE. The
schedule is ``latentserve.noise_schedule``'s one formula; the exporter writes the
``alphas_cumprod`` trained with into the manifest, and the server's samplers step through
exactly those. A class-conditional model swaps each label for the
null label ``num_classes`` with probability ``cond_drop_prob``, which trains the
unconditional model that guidance needs alongside the conditional one.

There is no cheap exact likelihood: evaluation reports the test-split denoising MSE of the
EMA network (the weights that are exported), never a number called bits/dim.
"""

from __future__ import annotations

from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from latentserve.training.families.base import ImageModel, StepOutput
from latentserve.training.families.ema import EMA
from latentserve.training.families.layers import ImageShape
from latentserve.training.families.unet import UNet
from latentserve.training.likelihood import LEVELS
from pydantic import ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass as config_dataclass
from torch import nn

from latentserve.noise_schedule import BetaSchedule, alphas_cumprod

PredictionType = Literal["epsilon", "v_prediction"]


@config_dataclass(config=ConfigDict(extra="forbid"))
class DDPMConfig:
    """The ``[model]`` table: network sizes, noise schedule, EMA and conditioning."""

    widths: list[int] = Field(default_factory=lambda: [32, 64, 64], min_length=1)
    depth: int = Field(default=1, gt=0)  # residual blocks per resolution level
    groups: int = Field(default=8, gt=0)  # GroupNorm groups (fewer where widths need)
    prediction_type: PredictionType = "epsilon"
    beta_schedule: BetaSchedule = "cosine"
    num_train_timesteps: int = Field(default=1000, gt=1)
    beta_start: float = Field(default=1e-4, gt=0)  # linear schedule only
    beta_end: float = Field(default=0.02, gt=0, lt=1)  # linear schedule only
    ema_decay: float = Field(default=0.999, ge=0, lt=1)
    num_classes: int = Field(default=0, ge=0)  # 0: unconditional
    cond_drop_prob: float = Field(default=0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered_betas(self) -> DDPMConfig:
        if self.beta_start >= self.beta_end:
            raise ValueError("beta_start must be below beta_end")
        return self


class NoiseScheduleConfig(Protocol):
    """The schedule fields a diffusion family's config has (DDPM's, latent diffusion's)."""

    beta_schedule: BetaSchedule
    num_train_timesteps: int
    beta_start: float
    beta_end: float


def register_noise_schedule(module: nn.Module, config: NoiseScheduleConfig) -> None:
    """Give a diffusion model its ``alphas_cumprod`` (float64 numpy, what the exporter
    writes) and, as buffers derived from the config (so not saved with the weights), the
    per-timestep ``signal`` sqrt(ᾱ_t) and ``noise_scale`` sqrt(1 - ᾱ_t) it trains with."""
    module.alphas_cumprod = alphas_cumprod(
        config.beta_schedule, config.num_train_timesteps, config.beta_start, config.beta_end
    )
    alpha_bar = torch.from_numpy(module.alphas_cumprod)
    module.register_buffer("signal", alpha_bar.sqrt().float(), persistent=False)
    module.register_buffer("noise_scale", (1 - alpha_bar).sqrt().float(), persistent=False)


def to_signed(x: torch.Tensor) -> torch.Tensor:
    """uint8 levels → float32 in [-1, 1], the range the model denoises in."""
    return x.to(torch.float32) / ((LEVELS - 1) / 2) - 1.0


class DDPM(ImageModel):
    has_prior = True  # samples from noise

    def __init__(self, config: DDPMConfig, image: ImageShape) -> None:
        super().__init__(image)
        self.config = config
        self.unet = UNet(
            image.channels, config.widths, config.depth, config.groups, config.num_classes
        )
        self.ema = EMA(self.unet, config.ema_decay)
        register_noise_schedule(self, config)

    @property
    def null_label(self) -> int:
        return self.config.num_classes

    def configure_optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        """Adam over the trained UNet only; the EMA shadow follows it after each step."""
        return [torch.optim.Adam(self.unet.parameters(), lr=lr)]

    def after_optimizer_step(self) -> None:
        self.ema.update(self.unet)

    def _losses(
        self,
        net: UNet,
        x: torch.Tensor,
        generator: torch.Generator,
        labels: torch.Tensor | None,
        drop_prob: float,
    ) -> torch.Tensor:
        """Per-image MSE of the prediction at a random timestep (draw order: t, ε, drop)."""
        x0 = to_signed(x)
        n = x0.shape[0]
        t = torch.randint(0, self.config.num_train_timesteps, (n,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        a = self.signal[t].view(n, 1, 1, 1)
        s = self.noise_scale[t].view(n, 1, 1, 1)
        x_t = a * x0 + s * noise
        target = noise if self.config.prediction_type == "epsilon" else a * noise - s * x0
        pred = net(x_t, t.to(torch.float32), self._conditioning(labels, n, generator, drop_prob))
        return F.mse_loss(pred, target, reduction="none").flatten(1).mean(1)

    def _conditioning(
        self, labels: torch.Tensor | None, n: int, generator: torch.Generator, drop_prob: float
    ) -> torch.Tensor | None:
        """The labels the UNet sees: none (unconditional), or each dropped to the null
        label with probability ``drop_prob``."""
        if not self.config.num_classes:
            return None
        if labels is None:
            raise ValueError("a class-conditional DDPM needs a dataset with labels")
        drop = torch.rand(n, generator=generator) < drop_prob
        return torch.where(drop, torch.full_like(labels, self.null_label), labels)

    def training_step(
        self, x: torch.Tensor, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> StepOutput:
        loss = self._losses(self.unet, x, generator, labels, self.config.cond_drop_prob).mean()
        return StepOutput(loss=loss, metrics={"mse": loss.item()})

    def evaluate(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        iw_k: int = 1,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-image denoising MSE of the EMA network with the true labels (no dropout).

        There is no likelihood bound to tighten, so ``iw_k`` is ignored (as for VQ models),
        which lets one ``latentserve eval --iw-k`` cover every family's runs."""
        return {"denoising_mse": self._losses(self.ema.shadow, x, generator, labels, 0.0)}
