"""StyleGAN2-style GAN: mapping network, modulated convolutions, noise inputs, skip
outputs, a residual discriminator with lazy R1, an EMA generator (networks in
``stylegan2_nets``).

Training draws, per fake image, ``z`` and one noise map per layer; with probability
``mixing_prob`` a second ``z`` takes over the styles from a random layer index on (style
mixing regularisation), which is what makes mixing two latents at serving time give a
coherent image. The running mean of ``w`` is a buffer of the mapping network; the EMA
generator copies it (buffers are copied, weights averaged), so the exported sampler
truncates towards the mean the trained generator saw.
"""

from __future__ import annotations

import torch
from latentserve.training.families.dcgan import start_size
from latentserve.training.families.ema import EMA
from latentserve.training.families.gan import AdversarialModel, GANConfig
from latentserve.training.families.layers import ImageShape
from latentserve.training.families.stylegan2_nets import (
    MappingNetwork,
    StyleDiscriminator,
    SynthesisNetwork,
)
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as config_dataclass
from torch import nn


@config_dataclass(config=ConfigDict(extra="forbid"))
class StyleGAN2Config(GANConfig):
    """The ``[model]`` table; ``g_widths`` run from the lowest resolution up, ``d_widths``
    from the full resolution down, each step ×2 / ÷2."""

    w_dim: int = Field(default=64, gt=0)
    mapping_layers: int = Field(default=4, gt=0)
    mapping_lr_mul: float = Field(default=0.01, gt=0)
    w_avg_beta: float = Field(default=0.995, ge=0, lt=1)
    g_widths: list[int] = Field(default_factory=lambda: [64, 64, 32], min_length=1)
    d_widths: list[int] = Field(default_factory=lambda: [32, 64, 64], min_length=1)
    mbstd_group: int = Field(default=0, ge=0)  # minibatch-std group size (0: whole batch)
    mixing_prob: float = Field(default=0.9, ge=0, le=1)
    beta1: float = Field(default=0.0, ge=0, lt=1)
    beta2: float = Field(default=0.99, ge=0, lt=1)
    r1_gamma: float = Field(default=1.0, ge=0)


class StyleGenerator(nn.Module):
    """Mapping and synthesis networks: ``ws`` and noise maps → image in [-1, 1]."""

    def __init__(self, config: StyleGAN2Config, image: ImageShape) -> None:
        super().__init__()
        self.mapping = MappingNetwork(
            config.z_dim,
            config.w_dim,
            config.mapping_layers,
            config.mapping_lr_mul,
            config.w_avg_beta,
        )
        start = start_size(image, len(config.g_widths) - 1)
        self.synthesis = SynthesisNetwork(config.g_widths, config.w_dim, image.channels, start)

    @property
    def num_ws(self) -> int:
        return self.synthesis.num_ws

    def mixed_ws(self, w: torch.Tensor, w_mix: torch.Tensor, cutoff: torch.Tensor) -> torch.Tensor:
        """(B, num_ws, w_dim): ``w`` for layer indices below each row's ``cutoff``, then
        ``w_mix`` (``cutoff = num_ws``: no mixing)."""
        index = torch.arange(self.num_ws, device=w.device)
        use_mix = (index.unsqueeze(0) >= cutoff.reshape(-1, 1)).unsqueeze(2)
        return torch.where(use_mix, w_mix.unsqueeze(1), w.unsqueeze(1))

    def split_noise(self, noise: torch.Tensor) -> list[torch.Tensor]:
        """A flat (B, N) noise row → one (B, 1, h, w) map per layer, in layer order."""
        maps, start = [], 0
        for h, w in self.synthesis.noise_shapes:
            maps.append(noise[:, start : start + h * w].reshape(-1, 1, h, w))
            start += h * w
        return maps

    @property
    def noise_size(self) -> int:
        return sum(h * w for h, w in self.synthesis.noise_shapes)


class StyleGAN2(AdversarialModel):
    def __init__(self, config: StyleGAN2Config, image: ImageShape) -> None:
        super().__init__(config, image)
        self.config = config
        self.generator = StyleGenerator(config, image)
        start_size(image, len(config.d_widths) - 1)  # refuses sizes the D cannot halve
        self.discriminator = StyleDiscriminator(
            config.d_widths,
            image.channels * config.pack,
            (image.height, image.width),
            config.mbstd_group,
        )
        self.ema = EMA(self.generator, config.ema_decay)

    @property
    def g(self) -> nn.Module:
        return self.generator

    @property
    def d(self) -> nn.Module:
        return self.discriminator

    def fake_batch(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Draw order: z, the mixing z, whether to mix, the cutoff, the noise row."""
        g = self.generator
        z = torch.randn(n, self.config.z_dim, generator=generator)
        z_mix = torch.randn(n, self.config.z_dim, generator=generator)
        mix = torch.rand(n, generator=generator) < self.config.mixing_prob
        cutoff = torch.randint(1, g.num_ws, (n,), generator=generator)
        cutoff = torch.where(mix, cutoff, torch.full_like(cutoff, g.num_ws))
        noise = torch.randn(n, g.noise_size, generator=generator)
        w = g.mapping(torch.cat([z, z_mix]))
        ws = g.mixed_ws(w[:n], w[n:], cutoff)
        return g.synthesis(ws, g.split_noise(noise))
