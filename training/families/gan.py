"""What every GAN family shares: two optimisers and the alternating non-saturating game.

Each training step is two phases (``PhasedModel``): the discriminator's, on real images
and a fresh fake batch, then the generator's, scored by the discriminator as it stands
*after* its update. The fake batch is drawn once per step and reused by both phases (the
generator has not moved in between). Losses are the non-saturating logistic ones of
Goodfellow et al. (2014): ``softplus(D(fake)) + softplus(-D(real))`` for the
discriminator and ``softplus(-D(G(z)))`` for the generator.

R1 regularisation (Mescheder et al., 2018) penalises the discriminator's gradient on real
images, ``gamma / 2 * |grad D(x)|^2``. It is *lazy* as in StyleGAN2: applied every
``r1_every`` steps with its weight multiplied by ``r1_every``, which keeps its average
strength while paying for the double backward a fraction of the time. The step count is
a buffer, so a resumed run regularises on exactly the steps the uninterrupted one would.

With DiffAugment policies (the ``diffaugment`` setting), the discriminator sees only augmented
images — reals and fakes, in both phases, and in R1, whose gradient is taken with respect
to the un-augmented real image as in StyleGAN2-ADA — which is what keeps it from
memorising a small training set.

With ``pack`` > 1 the discriminator judges ``pack`` images at a time, stacked along the
channel axis (PacGAN; Lin et al., 2018): a generator that draws one glyph for every ``z``
hands it packs of near-identical images, which no real pack looks like, so collapse is
penalised directly instead of through a statistic the discriminator may learn to ignore.
Batches must be a multiple of ``pack``.

Both families sample from an exponential moving average of the generator's weights
(``ema``, Karras et al. 2018; Yazıcı et al. 2019): a short run's last iterate wobbles
between the modes the discriminator last pushed it to, its average much less.

A GAN has no likelihood and no encoder: evaluation reports nothing, and its export is
one sampler graph (``latentserve.exporters.recipes.dcgan`` and ``.stylegan2``).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from latentserve.training.families.base import PhasedModel, StepOutput
from latentserve.training.families.ddpm import to_signed
from latentserve.training.families.diffaugment import Policy, diff_augment
from latentserve.training.families.ema import EMA
from latentserve.training.families.layers import ImageShape
from pydantic import Field
from pydantic.dataclasses import dataclass as config_dataclass
from torch import nn


@config_dataclass
class GANConfig:
    """The optimisation settings every GAN family's ``[model]`` table has."""

    z_dim: int = Field(default=64, gt=0)
    beta1: float = Field(default=0.5, ge=0, lt=1)  # Adam betas of both players
    beta2: float = Field(default=0.999, ge=0, lt=1)
    d_lr_mult: float = Field(default=1.0, gt=0)  # discriminator lr = train.lr * this
    r1_gamma: float = Field(default=0.0, ge=0)  # 0: no R1 penalty
    r1_every: int = Field(default=16, gt=0)  # lazy regularisation interval (steps)
    # DiffAugment policies applied to every image the discriminator sees ([]: none)
    diffaugment: list[Policy] = Field(default_factory=list)
    ema_decay: float = Field(default=0.999, ge=0, lt=1)  # of the generator that is exported
    pack: int = Field(default=1, gt=0)  # images per discriminator input (PacGAN)


def r1_penalty(
    discriminator: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor
) -> torch.Tensor:
    """Per-image squared gradient norm of the discriminator's logit at real images
    (``discriminator`` may augment first: the gradient is with respect to ``real``)."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(real).sum(), real, create_graph=True)
    return grad.square().flatten(1).sum(1)


def pack_images(images: torch.Tensor, pack: int) -> torch.Tensor:
    """(B, C, H, W) → (B / pack, pack * C, H, W): consecutive images side by side in C."""
    b, c, h, w = images.shape
    if b % pack:
        raise ValueError(f"a batch of {b} images cannot be split into packs of {pack}")
    return images.reshape(b // pack, pack * c, h, w)


class AdversarialModel(PhasedModel):
    """A generator ``g`` and a discriminator ``d`` trained by the alternating game.

    Subclasses build both networks, then ``self.ema = EMA(generator, config.ema_decay)``,
    and say how a training batch of fakes is drawn.
    """

    has_prior = True  # samples from z ~ N(0, I)
    ema: EMA  # the averaged generator, which is what gets exported

    def __init__(self, config: GANConfig, image: ImageShape) -> None:
        super().__init__(image)
        self.gan_config = config
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.int64))

    @property
    @abstractmethod
    def g(self) -> nn.Module:
        """The trained generator."""

    @property
    @abstractmethod
    def d(self) -> nn.Module:
        """The discriminator: images in [-1, 1] → one logit per image."""

    @abstractmethod
    def fake_batch(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` images in [-1, 1] from the trained generator, differentiable in its weights,
        with all randomness drawn from ``generator``."""

    def configure_optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        """The discriminator's Adam (phase 0), then the generator's (phase 1)."""
        c = self.gan_config
        betas = (c.beta1, c.beta2)
        return [
            torch.optim.Adam(self.d.parameters(), lr=lr * c.d_lr_mult, betas=betas),
            torch.optim.Adam(self.g.parameters(), lr=lr, betas=betas),
        ]

    def after_optimizer_step(self) -> None:
        self.steps_done += 1
        self.ema.update(self.g)

    def r1_due(self) -> bool:
        c = self.gan_config
        return c.r1_gamma > 0 and int(self.steps_done) % c.r1_every == 0

    def training_phases(
        self, x: torch.Tensor, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> Iterator[StepOutput]:
        real = to_signed(x)
        fake = self.fake_batch(real.shape[0], generator)

        def critic(images: torch.Tensor) -> torch.Tensor:
            augmented = diff_augment(images, self.gan_config.diffaugment, generator)
            return self.d(pack_images(augmented, self.gan_config.pack))

        # discriminator phase: the generator's graph is kept for the next phase
        self.d.requires_grad_(True)
        real_logits = critic(real)
        fake_logits = critic(fake.detach())
        d_loss = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
        metrics = {
            "d_loss": d_loss.item(),
            "d_real": torch.sigmoid(real_logits).mean().item(),
            "d_fake": torch.sigmoid(fake_logits).mean().item(),
        }
        if self.r1_due():
            c = self.gan_config
            r1 = r1_penalty(critic, real).mean()
            d_loss = d_loss + 0.5 * c.r1_gamma * c.r1_every * r1
            metrics["r1"] = r1.item()
        yield StepOutput(d_loss, metrics)
        # generator phase, against the updated discriminator (which gets no gradients)
        self.d.requires_grad_(False)
        g_loss = F.softplus(-critic(fake)).mean()
        self.d.requires_grad_(True)
        yield StepOutput(g_loss, {"g_loss": g_loss.item()})
