"""A gated PixelCNN over the 8-bit pixels themselves: the one family with an exact likelihood.

``p(x) = prod_p p(x_p | x_<p)`` in raster order, each factor a 256-way softmax over the
pixel's levels, so ``-log p(x)`` is the exact code length of the 8-bit image (no bound, no
dequantization, no latent). The network is ``GatedPixelCNN`` with the levels as its codes;
sampling draws pixel by pixel through the server's autoregressive pipeline, where the
pixel map is the code map and the decoder only rescales levels to [0, 1].

Grayscale only: colour images would need an order over channels inside each pixel.
"""

from __future__ import annotations

import math

import torch
from latentserve.training.families.base import ImageModel, StepOutput
from latentserve.training.families.layers import ImageShape
from latentserve.training.families.pixelcnn import GatedPixelCNN
from latentserve.training.families.pixelcnn_step import PixelCNNPositionStep
from latentserve.training.likelihood import LEVELS
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as config_dataclass


@config_dataclass(config=ConfigDict(extra="forbid"))
class PixelCNNConfig:
    """Sizes of the pixel-level PixelCNN; the ``[model]`` table of a training config."""

    channels: int = Field(default=64, gt=0)
    layers: int = Field(default=7, ge=1)
    kernel: int = Field(default=3, ge=1)


class PixelCNN(ImageModel):
    has_prior = True

    def __init__(self, config: PixelCNNConfig, image: ImageShape) -> None:
        if image.channels != 1:
            raise ValueError(
                f"the pixel-level PixelCNN models grayscale images, got {image.channels} channels"
            )
        super().__init__(image)
        self.config = config
        self.net = GatedPixelCNN(
            LEVELS,
            image.height,
            image.width,
            channels=config.channels,
            layers=config.layers,
            kernel=config.kernel,
        )

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        """8-bit images (N, 1, H, W), uint8 or float levels → the (N, H, W) int64 code map."""
        return x[:, 0].round().long() if x.is_floating_point() else x[:, 0].long()

    def code_lengths(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``-log p(x)`` per image in nats: exact (the trainer's evaluation and the exported
        ``log_prob`` graph share it)."""
        return {"bits_per_dim": self.net.nats(self.pixels(x))}

    def training_step(
        self, x: torch.Tensor, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> StepOutput:
        nats_per_dim = self.code_lengths(x)["bits_per_dim"].mean() / self.image.dims
        return StepOutput(
            loss=nats_per_dim, metrics={"bits_per_dim": nats_per_dim.item() / math.log(2.0)}
        )

    def evaluate(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        iw_k: int = 1,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Exact per-image code lengths (nats); nothing is sampled, so ``iw_k`` is moot."""
        return self.code_lengths(x)

    def position_step(self) -> PixelCNNPositionStep:
        """The sampling step graph: logits at one position, from the rows it sees."""
        return PixelCNNPositionStep(self.net, self.image.height, self.image.width)

    def levels_to_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """The (N, H, W) level map → images (N, 1, H, W) in [0, 1]: the identity decoder."""
        return (pixels.to(torch.float32) / (LEVELS - 1)).unsqueeze(1)
