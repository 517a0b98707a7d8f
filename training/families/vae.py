"""Variational autoencoder with a discretized-logistic decoder.

Diagonal Gaussian posterior q(z|x), standard normal prior p(z), reparameterized samples
and analytic KL. ``-ELBO = E_q[-log p(x|z)] + KL(q || p)`` in nats per image bounds
``-log p(x)`` for the 8-bit data, so ``-ELBO / (D ln 2)`` is an honest bits/dim. With
``iw_k > 1`` evaluation reports the tighter importance-weighted bound (Burda et al.).
"""

from __future__ import annotations

import math

import torch
from latentserve.training.families.base import LatentModel, StepOutput
from latentserve.training.families.layers import ConvConfig, ConvDecoder, ConvEncoder, ImageShape
from latentserve.training.likelihood import discretized_logistic_log_prob, to_unit
from pydantic import ConfigDict
from pydantic.dataclasses import dataclass as config_dataclass

LOG_2PI = math.log(2.0 * math.pi)


@config_dataclass(config=ConfigDict(extra="forbid"))
class VAEConfig(ConvConfig):
    """Sizes of the VAE (see ``ConvConfig``)."""


class VAE(LatentModel):
    has_prior = True

    def __init__(self, config: VAEConfig, image: ImageShape) -> None:
        super().__init__(image, config.latent_dim)
        self.encoder = ConvEncoder(
            image, config.encoder_widths, config.encoder_hidden, 2 * config.latent_dim
        )
        self.decoder = ConvDecoder(
            image, config.decoder_widths, config.decoder_hidden, config.latent_dim
        )

    def encode(self, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.encoder(x01).chunk(2, dim=1)
        return mean, logvar.clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder(z)

    def _recon_nats(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        loc, log_scale = self.decode(z)
        return -discretized_logistic_log_prob(x, loc, log_scale).flatten(1).sum(1)

    def _negative_elbo(
        self, x: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.encode(to_unit(x))
        eps = torch.randn(mean.shape, generator=generator)
        z = mean + torch.exp(0.5 * logvar) * eps
        kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).sum(1)
        return self._recon_nats(x, z), kl

    def training_step(
        self, x: torch.Tensor, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> StepOutput:
        recon, kl = self._negative_elbo(x, generator)
        nats_per_dim = (recon + kl).mean() / self.image.dims
        return StepOutput(
            loss=nats_per_dim,
            metrics={
                "bits_per_dim": nats_per_dim.item() / math.log(2.0),
                "kl_nats": kl.mean().item(),
            },
        )

    def evaluate(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        iw_k: int = 1,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        recon, kl = self._negative_elbo(x, generator)
        out = {"bits_per_dim": recon + kl, "recon_bits_per_dim": recon, "kl_bits_per_dim": kl}
        if iw_k > 1:
            out[f"iw{iw_k}_bits_per_dim"] = self._iw_nll(x, generator, iw_k)
        return out

    def _iw_nll(self, x: torch.Tensor, generator: torch.Generator, k: int) -> torch.Tensor:
        """``-log (1/k) sum_i p(x, z_i) / q(z_i | x)``: a bound that tightens as k grows."""
        mean, logvar = self.encode(to_unit(x))
        log_weights = []
        for _ in range(k):
            eps = torch.randn(mean.shape, generator=generator)
            z = mean + torch.exp(0.5 * logvar) * eps
            log_q = -0.5 * (eps.square() + logvar + LOG_2PI).sum(1)
            log_prior = -0.5 * (z.square() + LOG_2PI).sum(1)
            log_weights.append(log_prior - self._recon_nats(x, z) - log_q)
        return -(torch.logsumexp(torch.stack(log_weights), dim=0) - math.log(k))
