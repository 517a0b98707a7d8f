"""The family table: every model family, named once (see ``latentserve.training.registry``).

A family is its module (the ``nn.Module``s, the loss, a config dataclass); its row here
is what makes a config's ``family = "..."`` reach it. Adding a family is its module, a
row below, a ``<name>-tiny`` config and an export recipe row; the family-table test names
whichever is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from latentserve.training.families.autoencoder import Autoencoder, AutoencoderConfig
from latentserve.training.families.base import ImageModel
from latentserve.training.families.dcgan import DCGAN, DCGANConfig
from latentserve.training.families.ddpm import DDPM, DDPMConfig
from latentserve.training.families.glow import Glow, GlowConfig
from latentserve.training.families.klae import KLAEConfig, KLAutoencoder
from latentserve.training.families.layers import ImageShape
from latentserve.training.families.ldm import LatentDiffusion, LDMConfig
from latentserve.training.families.nvae import NVAE, NVAEConfig
from latentserve.training.families.pixelcnn_pixels import PixelCNN, PixelCNNConfig
from latentserve.training.families.stylegan2 import StyleGAN2, StyleGAN2Config
from latentserve.training.families.vae import VAE, VAEConfig
from latentserve.training.families.vqvae import VQVAE, VQVAEConfig
from latentserve.training.families.vqvae2 import VQVAE2, VQVAE2Config
from latentserve.training.registry import ClosedRegistry


@dataclass(frozen=True)
class Family:
    """A family: its config dataclass and how to build its model from it."""

    name: str
    config_cls: type
    build: Callable[[Any, ImageShape], ImageModel]


FAMILIES: ClosedRegistry[Family] = ClosedRegistry.table(
    "model family",
    [
        Family("autoencoder", AutoencoderConfig, Autoencoder),
        Family("dcgan", DCGANConfig, DCGAN),
        Family("ddpm", DDPMConfig, DDPM),
        Family("glow", GlowConfig, Glow),
        Family("klae", KLAEConfig, KLAutoencoder),
        Family("ldm", LDMConfig, LatentDiffusion),
        Family("nvae", NVAEConfig, NVAE),
        Family("pixelcnn", PixelCNNConfig, PixelCNN),
        Family("stylegan2", StyleGAN2Config, StyleGAN2),
        Family("vae", VAEConfig, VAE),
        Family("vqvae", VQVAEConfig, VQVAE),
        Family("vqvae2", VQVAE2Config, VQVAE2),
    ],
    name=lambda family: family.name,
)


def get_family(name: str) -> Family:
    """The family called ``name``; unknown names list the known ones."""
    return FAMILIES.get(name)


def family_names() -> list[str]:
    return FAMILIES.names()
