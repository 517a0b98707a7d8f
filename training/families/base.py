"""What the trainer and the exporters ask of every family's model.

One small interface keeps one trainer loop for all families: a family fills in how it
scores a batch and, where it needs more than one Adam over all its weights, owns its
optimisation (its optimisers, and what follows each step, such as an EMA update).
``LatentModel`` adds the encoder/decoder pair that the latent-decoder
export graphs wrap; a flow has no such pair and derives from ``ImageModel`` directly.
``CaptionedModel`` is a text-to-image model: it also receives each image's caption.
``PhasedModel`` minimises several losses one after another within a step, each with its
own optimiser (a GAN's discriminator, then its generator).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from latentserve.training.families.layers import ImageShape
from torch import nn


@dataclass
class StepOutput:
    """A training step's loss (to minimise) and scalar metrics for the log."""

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


class ImageModel(nn.Module, ABC):
    """Any trainable model of 8-bit images: what the trainer and evaluation need."""

    #: Whether the model can sample new images (for latent models: has a prior).
    has_prior: bool = False

    def __init__(self, image: ImageShape) -> None:
        super().__init__()
        self.image = image

    @abstractmethod
    def training_step(
        self, x: torch.Tensor, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> StepOutput:
        """Loss of a uint8 batch; ``generator`` is the only randomness it may use.

        ``labels`` are the batch's int64 class labels where the dataset has them;
        unconditional families ignore them.
        """

    def configure_optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        """The optimisers the trainer steps after each backward pass (the trainer's lr
        schedule scales every group's initial lr). Default: one Adam over all parameters."""
        return [torch.optim.Adam(self.parameters(), lr=lr)]

    def after_optimizer_step(self) -> None:
        """Called once after every training step's optimiser steps (e.g. an EMA update)."""

    def calibrate(self, train_images: torch.Tensor, batch_size: int) -> dict[str, float]:
        """Called once at ``calibration_step``, with the whole uint8 training split, before
        that step's checkpoint: fits what depends on the weights so far without being
        trained (a latent autoencoder's latent scale) into buffers, and returns numbers for
        the log. Default: nothing to fit."""
        return {}

    def calibration_step(self, total: int) -> int:
        """The step at which the trainer calls ``calibrate``: when training completes
        (``total``), unless a family fits something between two phases of its training."""
        return total

    def evaluate(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        iw_k: int = 1,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-image test scores. Entries named ``*bits_per_dim`` are code lengths in nats
        (reported in bits/dim); any other entry is a score reported as its mean.

        Default: nothing, for a family without a likelihood or a cheap test score.
        """
        return {}


class CaptionedModel(ImageModel):
    """A model conditioned on each image's caption (text-to-image): the trainer and the
    evaluation pass a captioned dataset's captions of the batch along with its images."""

    @abstractmethod
    def training_step(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        labels: torch.Tensor | None = None,
        captions: Sequence[str] = (),
    ) -> StepOutput:
        """As ``ImageModel.training_step``, with one caption per image of ``x``."""

    def evaluate(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        iw_k: int = 1,
        labels: torch.Tensor | None = None,
        captions: Sequence[str] = (),
    ) -> dict[str, torch.Tensor]:
        """As ``ImageModel.evaluate``, with one caption per image of ``x``."""
        return {}


class PhasedModel(ImageModel):
    """A model whose training step is several losses minimised in turn, each by its own
    optimiser: ``configure_optimizers`` returns one optimiser per phase, in phase order.

    A GAN needs this: its generator's loss must be computed against the discriminator
    *after* that step's discriminator update, so one loss for every optimiser cannot
    express it.
    """

    @abstractmethod
    def training_phases(
        self, x: torch.Tensor, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> Iterator[StepOutput]:
        """Yield each phase's loss in order; the trainer minimises it with that phase's
        optimiser (backward, step) before asking for the next one."""

    def training_step(
        self, x: torch.Tensor, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> StepOutput:
        """Not one loss: a phased model trains through ``training_phases`` only."""
        raise TypeError(f"{type(self).__name__} trains in phases: call training_phases")


class LatentModel(ImageModel):
    """A model with an encoder to a flat latent and a decoder to pixel likelihoods."""

    def __init__(self, image: ImageShape, latent_dim: int) -> None:
        super().__init__(image)
        self.latent_dim = latent_dim

    @property
    def latent_shape(self) -> list[int]:
        return [self.latent_dim]

    @abstractmethod
    def encode(self, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Image in [0, 1] → (posterior mean or code, posterior log-variance or None)."""

    @abstractmethod
    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent → per-pixel (loc, log_scale) of the discretized logistic on [0, 1]."""

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """The image a latent stands for: the logistic's location clamped to [0, 1]."""
        loc, _ = self.decode(z)
        return loc.clamp(0.0, 1.0)
