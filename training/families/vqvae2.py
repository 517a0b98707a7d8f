"""VQ-VAE-2 (Razavi et al., 2019): two levels of EMA-quantized code maps and a prior per level.

For a 28×28 image the bottom encoder halves the image to 14×14 features; the top encoder
halves those again to 7×7 and quantizes them with its own codebook. The top codes are
decoded back to 14×14 and concatenated with the bottom features before the bottom
quantizer, so the bottom codes only need to carry what the top map left out (local
detail) while the top map carries global shape. The decoder takes both quantized maps
(the top one upsampled) to per-pixel discretized-logistic (loc, log_scale).

Two PixelCNN priors are trained in the same run on the detached codes, as in the paper's
second stage but without a second run: the top prior over the 7×7 map with causal
self-attention (global structure benefits from seeing the whole past), and the bottom
prior over the 14×14 map conditioned on the whole top map, embedded and upsampled to
14×14 and fed through the PixelCNN's conditioning hook. Sampling draws the top map, then
the bottom map given it, then decodes.

Likelihood. The encoder is deterministic, so q(c_top, c_bottom | x) is a point mass and
the ELBO is ``log p(x|c_top, c_bottom) + log p(c_top) + log p(c_bottom|c_top)``: the sum
of the three code lengths ``evaluate`` reports is an honest upper bound on ``-log p(x)``
under ``p(x) = sum_c p(c_top) p(c_bottom|c_top) p(x|c)``. There is nothing to sample,
so ``iw_k`` cannot tighten it and is ignored.
"""

from __future__ import annotations

import math

import torch
from latentserve.training.families.base import ImageModel, StepOutput
from latentserve.training.families.layers import ImageShape
from latentserve.training.families.pixelcnn import GatedPixelCNN
from latentserve.training.families.vq import VectorQuantizer
from latentserve.training.families.vqvae import (
    ResBlock,
    code_map_size,
    logistic_params,
    pixel_nats,
)
from latentserve.training.likelihood import to_unit
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as config_dataclass
from torch import nn


@config_dataclass(config=ConfigDict(extra="forbid"))
class VQVAE2Config:
    """Sizes of VQ-VAE-2 and its two priors; the ``[model]`` table of a training config."""

    num_codes_top: int = Field(default=32, gt=1)
    num_codes_bottom: int = Field(default=64, gt=1)
    code_dim: int = Field(default=16, gt=0)
    hidden: int = Field(default=64, gt=1)
    res_blocks: int = Field(default=2, ge=0)
    decay: float = Field(default=0.99, gt=0, lt=1)
    beta: float = Field(default=0.25, ge=0)
    dead_after: int = Field(default=100, gt=0)  # steps unused before a code restarts
    prior_top_channels: int = Field(default=64, gt=0)
    prior_top_layers: int = Field(default=6, ge=1)
    prior_bottom_channels: int = Field(default=64, gt=0)
    prior_bottom_layers: int = Field(default=6, ge=1)
    prior_kernel: int = Field(default=3, ge=1)
    cond_channels: int = Field(default=32, gt=0)  # top-code features the bottom prior sees


def _res_stack(channels: int, blocks: int) -> list[nn.Module]:
    return [*(ResBlock(channels) for _ in range(blocks)), nn.ReLU()]


def _upsample(in_ch: int, out_ch: int) -> nn.ConvTranspose2d:
    """Exactly doubles height and width."""
    return nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1)


def _downsample(in_ch: int, out_ch: int) -> nn.Conv2d:
    """Exactly halves even heights and widths."""
    return nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1)


class BottomPrior(nn.Module):
    """(codes_bottom (N, 14, 14), codes_top (N, 7, 7)) → logits (N, Kb, 14, 14).

    The top map is fully known when the bottom map is sampled, so its conditioning
    features may look at every top code (a 3×3 conv, then a 2× upsample); causality
    only concerns the bottom codes, which the PixelCNN handles.
    """

    def __init__(self, config: VQVAE2Config, height: int, width: int) -> None:
        super().__init__()
        c = config.cond_channels
        self.embed_top = nn.Embedding(config.num_codes_top, c)
        self.condition = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), _upsample(c, c))
        self.pixelcnn = GatedPixelCNN(
            config.num_codes_bottom,
            height,
            width,
            channels=config.prior_bottom_channels,
            layers=config.prior_bottom_layers,
            kernel=config.prior_kernel,
            cond_channels=c,
        )

    def conditioning(self, codes_top: torch.Tensor) -> torch.Tensor:
        return self.condition(self.embed_top(codes_top).permute(0, 3, 1, 2))

    def forward(self, codes_bottom: torch.Tensor, codes_top: torch.Tensor) -> torch.Tensor:
        return self.pixelcnn(codes_bottom, self.conditioning(codes_top))

    def nats(self, codes_bottom: torch.Tensor, codes_top: torch.Tensor) -> torch.Tensor:
        """``-log p(codes_bottom | codes_top)`` per item (nats)."""
        return self.pixelcnn.nats(codes_bottom, self.conditioning(codes_top))


class VQVAE2(ImageModel):
    has_prior = True

    def __init__(self, config: VQVAE2Config, image: ImageShape) -> None:
        super().__init__(image)
        self.config = config
        self.bottom_size = code_map_size(image, 1)
        self.top_size = code_map_size(image, 2)
        hid, dim, blocks = config.hidden, config.code_dim, config.res_blocks
        # Full-resolution layers dominate the cost on CPU: half width until the first stride.
        self.encoder_bottom = nn.Sequential(
            _downsample(image.channels, hid // 2),
            nn.ReLU(),
            nn.Conv2d(hid // 2, hid, 3, padding=1),
            *_res_stack(hid, blocks),
        )
        self.encoder_top = nn.Sequential(
            _downsample(hid, hid),
            nn.ReLU(),
            nn.Conv2d(hid, hid, 3, padding=1),
            *_res_stack(hid, blocks),
            nn.Conv2d(hid, dim, 1),
        )
        # The top codes decoded to bottom resolution: what the bottom map may leave out.
        self.top_to_bottom = nn.Sequential(
            nn.Conv2d(dim, hid, 3, padding=1), *_res_stack(hid, blocks), _upsample(hid, hid)
        )
        self.bottom_projection = nn.Conv2d(2 * hid, dim, 1)
        self.quantizer_top = self._quantizer(config.num_codes_top)
        self.quantizer_bottom = self._quantizer(config.num_codes_bottom)
        self.upsample_top = _upsample(dim, dim)
        self.decoder = nn.Sequential(
            nn.Conv2d(2 * dim, hid, 3, padding=1),
            *_res_stack(hid, blocks),
            _upsample(hid, hid // 2),
            nn.ReLU(),
            nn.Conv2d(hid // 2, 2 * image.channels, 3, padding=1),
        )
        self.prior_top = GatedPixelCNN(
            config.num_codes_top,
            *self.top_size,
            channels=config.prior_top_channels,
            layers=config.prior_top_layers,
            kernel=config.prior_kernel,
            attention=True,
        )
        self.prior_bottom = BottomPrior(config, *self.bottom_size)

    def _quantizer(self, num_codes: int) -> VectorQuantizer:
        c = self.config
        return VectorQuantizer(
            num_codes, c.code_dim, decay=c.decay, beta=c.beta, dead_after=c.dead_after
        )

    def _bottom_features(self, x01: torch.Tensor) -> torch.Tensor:
        return self.encoder_bottom(x01 * 2.0 - 1.0)

    def _bottom_vectors(self, features: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
        """Bottom features joined with the decoded top codes → vectors to quantize."""
        return self.bottom_projection(torch.cat([features, self.top_to_bottom(top)], dim=1))

    def encode_codes(self, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image in [0, 1] → (codes_top (N, 7, 7), codes_bottom (N, 14, 14)), int64."""
        features = self._bottom_features(x01)
        codes_top = self.quantizer_top.nearest(self.encoder_top(features))
        top = self.quantizer_top.lookup(codes_top)
        return codes_top, self.quantizer_bottom.nearest(self._bottom_vectors(features, top))

    def decode_vectors(
        self, top: torch.Tensor, bottom: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantized maps (N, D, 7, 7) and (N, D, 14, 14) → per-pixel (loc, log_scale)."""
        joined = torch.cat([bottom, self.upsample_top(top)], dim=1)
        return logistic_params(self.decoder(joined))

    def decode_codes(
        self, codes_top: torch.Tensor, codes_bottom: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode_vectors(
            self.quantizer_top.lookup(codes_top), self.quantizer_bottom.lookup(codes_bottom)
        )

    def decode_mean(self, codes_top: torch.Tensor, codes_bottom: torch.Tensor) -> torch.Tensor:
        """The image the codes stand for: the logistic's location clamped to [0, 1]."""
        return self.decode_codes(codes_top, codes_bottom)[0].clamp(0.0, 1.0)

    def code_lengths(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image nats of the three parts of the bound; ``x`` holds the 8-bit levels
        (uint8 or float), so the trainer's evaluation and the exported graph share it."""
        codes_top, codes_bottom = self.encode_codes(to_unit(x))
        recon = pixel_nats(x, *self.decode_codes(codes_top, codes_bottom))
        top = self.prior_top.nats(codes_top)
        bottom = self.prior_bottom.nats(codes_bottom, codes_top)
        return {
            "bits_per_dim": recon + top + bottom,
            "recon_bits_per_dim": recon,
            "prior_top_bits_per_dim": top,
            "prior_bottom_bits_per_dim": bottom,
        }

    def training_step(
        self, x: torch.Tensor, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> StepOutput:
        features = self._bottom_features(to_unit(x))
        qt = self.quantizer_top(self.encoder_top(features), generator)
        qb = self.quantizer_bottom(self._bottom_vectors(features, qt.quantized), generator)
        recon = pixel_nats(x, *self.decode_vectors(qt.quantized, qb.quantized))
        # The priors only model the codes the encoder currently produces: no gradient back.
        codes_top, codes_bottom = qt.codes.detach(), qb.codes.detach()
        prior_top = self.prior_top.nats(codes_top)
        prior_bottom = self.prior_bottom.nats(codes_bottom, codes_top)
        dims = self.image.dims
        parts = {
            "recon_bits_per_dim": recon.mean() / dims,
            "prior_top_bits_per_dim": prior_top.mean() / dims,
            "prior_bottom_bits_per_dim": prior_bottom.mean() / dims,
        }
        nats_per_dim = sum(parts.values())
        commitment = qt.commitment + qb.commitment
        ln2 = math.log(2.0)
        return StepOutput(
            loss=nats_per_dim + commitment,
            metrics={
                "bits_per_dim": nats_per_dim.item() / ln2,
                **{name: value.item() / ln2 for name, value in parts.items()},
                "commitment": commitment.item(),
                "perplexity_top": qt.perplexity.item(),
                "perplexity_bottom": qb.perplexity.item(),
                "dead_codes_restarted": float(qt.restarted + qb.restarted),
            },
        )

    def evaluate(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        iw_k: int = 1,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-image nats: ``-log p(x|c)``, ``-log p(c_top)``, ``-log p(c_bottom|c_top)``
        and their sum (see the module doc: an honest bound, nothing to sample)."""
        return self.code_lengths(x)
