"""Model families: one small module each, in a closed registry.

Importing this package registers exactly the families listed below.
"""

from latentserve.training.families import (  # noqa: F401  (registers)
    autoencoder,
    dcgan,
    ddpm,
    glow,
    klae,
    ldm,
    nvae,
    pixelcnn_pixels,
    stylegan2,
    vae,
    vqvae,
    vqvae2,
)
from latentserve.training.families.base import (
    CaptionedModel,
    ImageModel,
    LatentModel,
    PhasedModel,
    StepOutput,
)
from latentserve.training.families.layers import ImageShape
from latentserve.training.families.registry import Family, family_names, get_family

__all__ = [
    "CaptionedModel",
    "Family",
    "ImageModel",
    "ImageShape",
    "LatentModel",
    "PhasedModel",
    "StepOutput",
    "family_names",
    "get_family",
]
