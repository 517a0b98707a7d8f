"""Deterministic autoencoder with the same discretized-logistic decoder as the VAE.

It has no prior, so it cannot sample: its export has no sampler graph and no "sample"
capability. Its reconstruction code length ``-log p(x | decode(encode(x)))`` is reported
as ``recon_bits_per_dim``; it is *not* a bound on ``-log p(x)`` (the code is free).
"""

from __future__ import annotations

import math

import torch
from latentserve.training.families.base import LatentModel, StepOutput
from latentserve.training.families.layers import ConvConfig, ConvDecoder, ConvEncoder, ImageShape
from latentserve.training.likelihood import discretized_logistic_log_prob, to_unit
from pydantic import ConfigDict
from pydantic.dataclasses import dataclass as config_dataclass


@config_dataclass(config=ConfigDict(extra="forbid"))
class AutoencoderConfig(ConvConfig):
    """Sizes of the autoencoder (see ``ConvConfig``)."""


class Autoencoder(LatentModel):
    has_prior = False

    def __init__(self, config: AutoencoderConfig, image: ImageShape) -> None:
        super().__init__(image, config.latent_dim)
        self.encoder = ConvEncoder(
            image, config.encoder_widths, config.encoder_hidden, config.latent_dim
        )
        self.decoder = ConvDecoder(
            image, config.decoder_widths, config.decoder_hidden, config.latent_dim
        )

    def encode(self, x01: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.encoder(x01), None

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder(z)

    def _recon_nats(self, x: torch.Tensor) -> torch.Tensor:
        code, _ = self.encode(to_unit(x))
        loc, log_scale = self.decode(code)
        return -discretized_logistic_log_prob(x, loc, log_scale).flatten(1).sum(1)

    def training_step(
        self, x: torch.Tensor, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> StepOutput:
        nats_per_dim = self._recon_nats(x).mean() / self.image.dims
        return StepOutput(
            loss=nats_per_dim, metrics={"recon_bits_per_dim": nats_per_dim.item() / math.log(2.0)}
        )

    def evaluate(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        iw_k: int = 1,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        if iw_k > 1:
            raise ValueError("importance-weighted bounds need a prior; the autoencoder has none")
        return {"recon_bits_per_dim": self._recon_nats(x)}
