"""Model families: one small module each, named once in the family table
(``latentserve.training.families.registry``).
"""

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
