"""Plain result types shared by the REST and gRPC clients.

Both transports return these same dataclasses, so callers never see a protobuf message
or a JSON dict and can swap ``http://`` for ``grpc://`` without touching their code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from latentserve.clients.errors import LatentServeError
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
    pipeline: str = ""  # latent_decoder, autoregressive_prior or diffusion
    sample_parameters: list[str] = field(default_factory=list)  # what sample(**params) takes
    # the model's own values for sample parameters left out (its default temperature)
    sample_defaults: dict[str, float] = field(default_factory=dict)


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
class InterpolationResult:
    """Frames from ``seed_a``'s image to ``seed_b``'s (seeds are None between images)."""

    model: str
    seed_a: int | None
    seed_b: int | None
    images: list[Image.Image]


@dataclass(frozen=True)
class InterpolationFrame:
    """One streamed frame: ``index`` counts from 0 (``seed_a``'s image)."""

    model: str
    index: int
    image: Image.Image
    seed_a: int | None = None
    seed_b: int | None = None


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


@dataclass(frozen=True)
class Accepted:
    """The job was admitted: its id, and its parameters as checked (defaults filled in)."""

    job_id: str
    model: str
    seed: int
    params: dict[str, Any]


@dataclass(frozen=True)
class Queued:
    """The job waits for a place among the running ones; ``position`` 0 starts next."""

    position: int


@dataclass(frozen=True)
class Progress:
    """Step ``step`` of ``steps`` is done (denoiser steps, or code positions of a prior)."""

    step: int
    steps: int


@dataclass(frozen=True)
class Preview:
    """The current estimate of every image at ``step`` (multi-step models with previews)."""

    step: int
    images: list[Image.Image]


@dataclass(frozen=True)
class Result:
    """The job's images: the last event of a job that succeeded."""

    result: SampleResult


# What ``sample_events`` and ``watch_job`` yield; a failed job raises its error instead.
JobEvent = Accepted | Queued | Progress | Preview | Result


@dataclass(frozen=True)
class JobInfo:
    """A job as the server sees it now.

    ``state`` is ``queued``, ``running``, ``done``, ``failed`` or ``cancelled``; ``images``
    are set once it is done and ``error`` (the exception its waiters get) once it failed or
    was cancelled.
    """

    job_id: str
    model: str
    method: str
    state: str
    step: int
    steps: int
    params: dict[str, Any]
    created_at: float  # Unix time
    position: int | None = None  # place in the queue while queued
    seed: int | None = None
    preview: list[Image.Image] = field(default_factory=list)  # the latest one
    images: list[Image.Image] = field(default_factory=list)
    error: LatentServeError | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")


def single_group(model: str, groups: dict[str, np.ndarray]) -> np.ndarray:
    """The one latent group of a single-group model; several groups need ``encode_groups``."""
    if len(groups) != 1:
        raise ValueError(
            f"model {model} encodes to {len(groups)} latent groups "
            f"({', '.join(groups)}): use encode_groups()"
        )
    return next(iter(groups.values()))


@dataclass(frozen=True)
class ReloadResult:
    """What a repository reload did: versions served from now on, versions no longer
    served (unloaded once their in-flight work ends), and versions refused, with why."""

    loaded: list[str]
    removed: list[str]
    refused: dict[str, str]  # name@version -> the reason it is not served
