"""Plain result types shared by the REST and gRPC clients.

Both transports return these same dataclasses, so callers never see a protobuf message
or a JSON dict and can swap ``http://`` for ``grpc://`` without touching their code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class ImageShape:
    height: int
    width: int
    channels: int


@dataclass(frozen=True)
class ModelInfo:
    """What the server says about one model version."""

    name: str
    version: str
    family: str
    capabilities: list[str]
    image: ImageShape
    latent_shape: list[int]
    description: str = ""
    backend: str = ""
    execution_providers: list[str] = field(default_factory=list)
    max_batch_size: int = 0
    max_n: int = 0
    versions: list[str] = field(default_factory=list)
    likelihood: str | None = None  # "exact", "elbo", or None without log-prob


@dataclass(frozen=True)
class SampleResult:
    """Images drawn by one request; ``seed`` reproduces them exactly."""

    model: str
    seed: int
    images: list[Image.Image]


@dataclass(frozen=True)
class SampleChunk:
    """Part of a streamed sample: ``images[0]`` is image number ``offset`` of the request."""

    model: str
    seed: int
    offset: int
    images: list[Image.Image]


@dataclass(frozen=True)
class LogProbResult:
    """Bits/dim per image and what kind of number it is.

    ``bound`` is ``"exact"`` (a flow's density), ``"elbo"`` (an upper bound on the code
    length) or ``"importance_weighted"`` (a tighter bound from ``samples`` draws, made
    with ``seed``).
    """

    model: str
    bits_per_dim: list[float]
    bound: str
    samples: int
    seed: int | None = None


def single_group(model: str, groups: dict[str, np.ndarray]) -> np.ndarray:
    """The one latent group of a single-group model; several groups need ``encode_groups``."""
    if len(groups) != 1:
        raise ValueError(
            f"model {model} encodes to {len(groups)} latent groups "
            f"({', '.join(groups)}): use encode_groups()"
        )
    return next(iter(groups.values()))
