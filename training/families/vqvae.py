"""VQ-VAE (van den Oord et al., 2017) with an EMA codebook and a gated PixelCNN prior.

A conv encoder maps a 28×28 image through stride-2 stages to an h×w map of vectors
(7×7 for two stages), each replaced by its nearest code; the decoder maps the code
vectors back to per-pixel discretized-logistic (loc, log_scale) on [0, 1]. The prior is
a gated PixelCNN over the code map, trained in the same run on the (detached) codes:
it never sends gradients into the encoder, it only learns to model what the encoder
currently produces. The loss is ``recon nats/dim + commitment + prior nats/dim``.

Likelihood. The encoder is deterministic, so q(c|x) is a point mass on c = enc(x) and
the ELBO is ``log p(x|c) + log p(c) - log q(c|x) = log p(x|c) + log p(c)``: the sum of
the decoder's and the prior's code lengths is an honest upper bound on ``-log p(x)``
under the model ``p(x) = sum_c p(c) p(x|c)``. ``evaluate`` reports the two parts and
their sum; there is nothing to sample, so ``iw_k`` cannot tighten it and is ignored.
"""

from __future__ import annotations

import math

import torch
from latentserve.training.families.base import ImageModel, StepOutput
from latentserve.training.families.layers import ImageShape
from latentserve.training.families.pixelcnn import GatedPixelCNN
from latentserve.training.families.vq import VectorQuantizer
from latentserve.training.likelihood import discretized_logistic_log_prob, to_unit
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as config_dataclass
from torch import nn


@config_dataclass(config=ConfigDict(extra="forbid"))
class VQVAEConfig:
    """Sizes of the VQ-VAE and its prior; the ``[model]`` table of a training config."""

    num_codes: int = Field(default=64, gt=1)
    code_dim: int = Field(default=16, gt=0)
    hidden: int = Field(default=64, gt=0)
    stages: int = Field(default=2, ge=1)  # stride-2 stages: 28×28 → 7×7 for two
    res_blocks: int = Field(default=2, ge=0)
    decay: float = Field(default=0.99, gt=0, lt=1)
    beta: float = Field(default=0.25, ge=0)
    dead_after: int = Field(default=100, gt=0)  # steps unused before a code restarts
    prior_channels: int = Field(default=64, gt=0)
    prior_layers: int = Field(default=6, ge=1)
    prior_kernel: int = Field(default=3, ge=1)
    prior_attention: bool = False


class ResBlock(nn.Module):
    """``x + conv1x1(relu(conv3x3(relu(x))))``: depth without shrinking the map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def code_map_size(image: ImageShape, stages: int) -> tuple[int, int]:
    factor = 2**stages
    if image.height % factor or image.width % factor:
        raise ValueError(
            f"image {image.height}x{image.width} must be divisible by 2**{stages} = {factor} "
            f"for {stages} stride-2 stages"
        )
    return image.height // factor, image.width // factor


def stage_widths(config: VQVAEConfig) -> list[int]:
    """Channels after each stride-2 stage, doubling up to ``hidden`` at the code map.

    Full-resolution layers dominate the cost; narrow ones there keep a step cheap on CPU.
    """
    return [max(1, config.hidden // 2 ** (config.stages - 1 - s)) for s in range(config.stages)]


def build_encoder(image: ImageShape, config: VQVAEConfig) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = image.channels
    for width in stage_widths(config):
        layers += [nn.Conv2d(in_ch, width, 4, stride=2, padding=1), nn.ReLU()]
        in_ch = width
    layers.append(nn.Conv2d(in_ch, config.hidden, 3, padding=1))
    layers += [ResBlock(config.hidden) for _ in range(config.res_blocks)]
    layers += [nn.ReLU(), nn.Conv2d(config.hidden, config.code_dim, 1)]
    return nn.Sequential(*layers)


def build_decoder(image: ImageShape, config: VQVAEConfig) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(config.code_dim, config.hidden, 3, padding=1)]
    layers += [ResBlock(config.hidden) for _ in range(config.res_blocks)]
    layers.append(nn.ReLU())
    in_ch = config.hidden
    for width in reversed(stage_widths(config)):
        layers += [nn.ConvTranspose2d(in_ch, width // 2 or 1, 4, stride=2, padding=1), nn.ReLU()]
        in_ch = width // 2 or 1
    layers.append(nn.Conv2d(in_ch, 2 * image.channels, 3, padding=1))
    return nn.Sequential(*layers)


def logistic_params(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A decoder's 2C output channels → per-pixel (loc, log_scale) on [0, 1].

    The offsets start an untrained decoder near mid-grey with a spread of a few levels.
    """
    loc, log_scale = out.chunk(2, dim=1)
    return loc + 0.5, log_scale - 3.0


def pixel_nats(x: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """``-log p(x|c)`` per image (nats); ``x`` holds the 8-bit levels."""
    return -discretized_logistic_log_prob(x, loc, log_scale).flatten(1).sum(1)


class VQVAE(ImageModel):
    has_prior = True

    def __init__(self, config: VQVAEConfig, image: ImageShape) -> None:
        super().__init__(image)
        self.config = config
        self.code_height, self.code_width = code_map_size(image, config.stages)
        self.encoder = build_encoder(image, config)
        self.quantizer = VectorQuantizer(
            config.num_codes,
            config.code_dim,
            decay=config.decay,
            beta=config.beta,
            dead_after=config.dead_after,
        )
        self.decoder = build_decoder(image, config)
        self.prior = GatedPixelCNN(
            config.num_codes,
            self.code_height,
            self.code_width,
            channels=config.prior_channels,
            layers=config.prior_layers,
            kernel=config.prior_kernel,
            attention=config.prior_attention,
        )

    @property
    def num_codes(self) -> int:
        return self.config.num_codes

    def features(self, x01: torch.Tensor) -> torch.Tensor:
        """Image in [0, 1] → the encoder's (N, D, h, w) vectors, before quantization."""
        return self.encoder(x01 * 2.0 - 1.0)

    def encode_codes(self, x01: torch.Tensor) -> torch.Tensor:
        """Image in [0, 1] → (N, h, w) int64 codes (nearest codebook entries)."""
        return self.quantizer.nearest(self.features(x01))

    def decode_vectors(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Code vectors (N, D, h, w) → per-pixel (loc, log_scale) on [0, 1]."""
        return logistic_params(self.decoder(e))

    def decode_codes(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode_vectors(self.quantizer.lookup(codes))

    def decode_mean(self, codes: torch.Tensor) -> torch.Tensor:
        """The image codes stand for: the logistic's location clamped to [0, 1]."""
        return self.decode_codes(codes)[0].clamp(0.0, 1.0)

    def recon_nats(
        self, x: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor
    ) -> torch.Tensor:
        """``-log p(x|c)`` per image (nats); ``x`` holds the 8-bit levels."""
        return pixel_nats(x, loc, log_scale)

    def training_step(
        self, x: torch.Tensor, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> StepOutput:
        q = self.quantizer(self.features(to_unit(x)), generator)
        recon = self.recon_nats(x, *self.decode_vectors(q.quantized))
        prior = self.prior.nats(q.codes.detach())
        dims = self.image.dims
        recon_per_dim, prior_per_dim = recon.mean() / dims, prior.mean() / dims
        loss = recon_per_dim + q.commitment + prior_per_dim
        ln2 = math.log(2.0)
        return StepOutput(
            loss=loss,
            metrics={
                "bits_per_dim": (recon_per_dim + prior_per_dim).item() / ln2,
                "recon_bits_per_dim": recon_per_dim.item() / ln2,
                "prior_bits_per_dim": prior_per_dim.item() / ln2,
                "commitment": q.commitment.item(),
                "perplexity": q.perplexity.item(),
                "dead_codes_restarted": float(q.restarted),
            },
        )

    def evaluate(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        iw_k: int = 1,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-image nats: ``-log p(x|c)``, ``-log p(c)`` and their sum (see module doc)."""
        return self.code_lengths(x)

    def code_lengths(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image nats of the two parts of the bound; ``x`` holds the 8-bit levels
        (uint8 or float), so the trainer's evaluation and the exported graph share it."""
        codes = self.encode_codes(to_unit(x))
        recon = self.recon_nats(x, *self.decode_codes(codes))
        prior = self.prior.nats(codes)
        return {
            "bits_per_dim": recon + prior,
            "recon_bits_per_dim": recon,
            "prior_bits_per_dim": prior,
        }
