"""Latent diffusion for text-to-image (Rombach et al., 2022), tiny: one run, one checkpoint.

The run has two phases. For the first ``ae_steps`` it trains a KL autoencoder (the
``klae`` family's model) on the images; at step ``ae_steps`` the trainer calls
``calibrate``, which fits the latent scale (1 / std of the training split's posterior
means) and so freezes the autoencoder. From then on a UNet learns ε-prediction, under a
cosine schedule, on scaled latents ``latent_scale * encode(x)``, reading the frozen MiniLM
token states of each image's caption by cross-attention. Each caption is swapped for the
empty prompt with probability ``cond_drop_prob``, which trains the unconditional model that
classifier-free guidance needs. The autoencoder's scale buffer (0 until fitted) is the
phase: a resumed run picks up in the phase its checkpoint was in.

The 90 MB text encoder is never part of this module: it is shared per process and only
its states of each distinct caption are kept (a plain dict, not weights), so checkpoints
hold the autoencoder, the UNet and its EMA alone.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from latentserve.training.families.base import CaptionedModel, StepOutput
from latentserve.training.families.ddpm import PredictionType, register_noise_schedule
from latentserve.training.families.ema import EMA
from latentserve.training.families.klae import KLAEConfig, KLAutoencoder
from latentserve.training.families.layers import ImageShape
from latentserve.training.families.unet import UNet
from latentserve.training.likelihood import to_unit
from latentserve.training.text_encoder import TextEncoder
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as config_dataclass

from latentserve.noise_schedule import BetaSchedule

UNCONDITIONAL = ""  # the prompt of classifier-free guidance's unconditional rows


@functools.cache
def shared_text_encoder() -> TextEncoder:
    """The frozen text encoder, loaded once per process and held outside every model."""
    return TextEncoder()


@config_dataclass(config=ConfigDict(extra="forbid"))
class LDMConfig:
    """The ``[model]`` table: the autoencoder phase, the denoiser and its conditioning."""

    autoencoder: KLAEConfig = Field(default_factory=KLAEConfig)
    ae_steps: int = Field(default=1000, gt=0)  # the first phase; the denoiser gets the rest
    ae_lr: float | None = Field(default=None, gt=0)  # None: the run's train.lr
    widths: list[int] = Field(default_factory=lambda: [64, 128], min_length=1)
    depth: int = Field(default=1, gt=0)
    groups: int = Field(default=8, gt=0)
    heads: int = Field(default=4, gt=0)
    cross_levels: int = Field(default=1, ge=0)  # lowest levels with cross-attention
    max_tokens: int = Field(default=16, gt=1)
    prediction_type: PredictionType = "epsilon"
    beta_schedule: BetaSchedule = "cosine"
    num_train_timesteps: int = Field(default=1000, gt=1)
    beta_start: float = Field(default=1e-4, gt=0)  # linear schedule only
    beta_end: float = Field(default=0.02, gt=0, lt=1)  # linear schedule only
    ema_decay: float = Field(default=0.999, ge=0, lt=1)
    cond_drop_prob: float = Field(default=0.1, ge=0, le=1)


def text_denoiser(
    unet: UNet,
    sample: torch.Tensor,
    timestep: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    encoder_attention_mask: torch.Tensor,
) -> torch.Tensor:
    """The denoiser with the I/O of the text-to-image contract (the exported graph)."""
    return unet(sample, timestep, None, encoder_hidden_states, encoder_attention_mask)


class LatentDiffusion(CaptionedModel):
    has_prior = True  # samples from noise
    #: MiniLM's width, fixed so that a model is built without loading the encoder.
    text_hidden_size = 384

    def __init__(self, config: LDMConfig, image: ImageShape) -> None:
        super().__init__(image)
        self.config = config
        self.autoencoder = KLAutoencoder(config.autoencoder, image)
        self.latent_shape = self.autoencoder.latent_shape
        self.unet = UNet(
            config.autoencoder.latent_channels,
            config.widths,
            config.depth,
            config.groups,
            context_dim=self.text_hidden_size,
            heads=config.heads,
            cross_levels=config.cross_levels,
        )
        self.ema = EMA(self.unet, config.ema_decay)
        register_noise_schedule(self, config)
        # (caption, device) → (states, mask) of the frozen encoder: a cache, never weights
        self._prompt_states: dict[tuple[str, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def latent_scale(self) -> float:
        """The fitted scale; refuses a model still in its autoencoder phase."""
        return self.autoencoder.trained_scale()

    @property
    def in_autoencoder_phase(self) -> bool:
        return float(self.autoencoder.latent_scale) <= 0

    def configure_optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        """One Adam per phase; the idle one sees no gradients, so its step does nothing."""
        return [
            torch.optim.Adam(self.autoencoder.parameters(), lr=self.config.ae_lr or lr),
            torch.optim.Adam(self.unet.parameters(), lr=lr),
        ]

    def after_optimizer_step(self) -> None:
        if not self.in_autoencoder_phase:
            self.ema.update(self.unet)

    def calibration_step(self, total: int) -> int:
        return self.config.ae_steps

    def calibrate(self, train_images: torch.Tensor, batch_size: int) -> dict[str, float]:
        """End of the autoencoder phase: fit its latent scale, which freezes it. A run
        resumed at this step finds the scale already fitted and logs nothing."""
        if not self.in_autoencoder_phase:
            return {}
        return self.autoencoder.calibrate(train_images, batch_size)

    def embed(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states (B, max_tokens, 384) and mask (B, max_tokens) of ``prompts``.

        Each distinct prompt is encoded alone, once: its states then never depend on which
        other prompts shared a batch, so a resumed run sees bit-identical conditioning.
        """
        device = self.signal.device
        for prompt in dict.fromkeys(prompts):
            if (prompt, device) not in self._prompt_states:
                with torch.device("cpu"):  # the shared frozen encoder stays on the CPU
                    states, mask = shared_text_encoder().encode([prompt], self.config.max_tokens)
                self._prompt_states[prompt, device] = (states[0].to(device), mask[0].to(device))
        rows = [self._prompt_states[p, device] for p in prompts]
        return torch.stack([s for s, _ in rows]), torch.stack([m for _, m in rows])

    @torch.no_grad()
    def latents(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images → scaled latents, the samples the denoiser learns."""
        return self.autoencoder.encode(to_unit(x)) * self.latent_scale

    def _losses(
        self,
        net: UNet,
        x: torch.Tensor,
        generator: torch.Generator,
        captions: Sequence[str],
        drop_prob: float,
    ) -> torch.Tensor:
        """Per-image MSE of the prediction at a random timestep (draw order: t, ε, drop)."""
        z0 = self.latents(x)
        n = z0.shape[0]
        t = torch.randint(0, self.config.num_train_timesteps, (n,), generator=generator)
        noise = torch.randn(z0.shape, generator=generator)
        drop = (torch.rand(n, generator=generator) < drop_prob).tolist()
        prompts = [UNCONDITIONAL if d else c for d, c in zip(drop, captions, strict=True)]
        a = self.signal[t].view(n, 1, 1, 1)
        s = self.noise_scale[t].view(n, 1, 1, 1)
        target = noise if self.config.prediction_type == "epsilon" else a * noise - s * z0
        pred = text_denoiser(net, a * z0 + s * noise, t.to(torch.float32), *self.embed(prompts))
        return F.mse_loss(pred, target, reduction="none").flatten(1).mean(1)

    def training_step(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        labels: torch.Tensor | None = None,
        captions: Sequence[str] = (),
    ) -> StepOutput:
        if self.in_autoencoder_phase:
            out = self.autoencoder.training_step(x, generator)
            return StepOutput(out.loss, {f"ae_{k}": v for k, v in out.metrics.items()})
        loss = self._losses(self.unet, x, generator, captions, self.config.cond_drop_prob).mean()
        return StepOutput(loss=loss, metrics={"mse": loss.item()})

    def evaluate(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        iw_k: int = 1,
        labels: torch.Tensor | None = None,
        captions: Sequence[str] = (),
    ) -> dict[str, torch.Tensor]:
        """Per-image denoising MSE of the EMA network with the true captions, and the
        autoencoder's scores. No likelihood: ``iw_k`` is ignored, as for DDPM."""
        scores = self.autoencoder.evaluate(x, generator)
        scores["denoising_mse"] = self._losses(self.ema.shadow, x, generator, captions, 0.0)
        return scores
