"""Parameters of the ``gan`` pipeline: truncation for every generator, style mixing
for style-based ones. A generator without styles takes ``TruncationParams``, so
``mix_seed`` sent to it is refused by name like any field its kind lacks.

``interpolate`` takes truncation only: its frames slerp each seed's ``z`` and layer
noise, and a ``mix_seed`` would add a third latent that no end frame's seed names."""

from __future__ import annotations

import math
from typing import ClassVar

from latentserve.server.params import RequestParams, SampleParams
from latentserve.server.pipelines.interpolation import InterpolateParams
from pydantic import Field, field_validator


class Truncation(RequestParams):
    """ψ, shared by sampling and interpolation so both validate it the same way."""

    truncation: float = Field(
        default=1.0, description="ψ in [0, 1]: pull latents towards the average (1: none)"
    )

    @field_validator("truncation")
    @classmethod
    def _unit_interval(cls, value: float) -> float:
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(f"must be between 0 and 1, got {value}")
        return value


class TruncationParams(Truncation, SampleParams):
    kind: ClassVar[str] = "generator"


class StyleParams(TruncationParams):
    kind: ClassVar[str] = "style-based generator"

    mix_seed: int | None = Field(
        default=None,
        description="seed of a second latent whose styles take over from mix_layer on",
    )
    mix_layer: int | None = Field(
        default=None,
        description="first style index taken from mix_seed (default: half the styles)",
    )


class GanInterpolateParams(Truncation, InterpolateParams):
    """``interpolate``: the seeds' ``z`` and layer noise slerped, at one truncation."""

    kind: ClassVar[str] = "generator"
