"""Interpolation between two seeds (or two encoded images) along a great circle of latents.

A pipeline kind offers ``interpolate`` by declaring ``params_for["interpolate"]`` (an
``InterpolateParams`` subclass carrying the same per-request fields as its ``sample``) and
``needs["interpolate"]``, and by implementing ``interpolate``. For kinds whose randomness
is one standard-normal row per item (``ItemwisePipeline.draw``), ``GaussianInterpolation``
is the whole implementation: it slerps the rows ``sample`` draws for n = 1 with
``seed_a`` and ``seed_b`` and renders them with ``sample_items``, so the first and last
frames are exactly the images ``sample`` gives for those seeds.

Slerp, not a straight line: a Gaussian latent's norm concentrates near ``sqrt(d)``, and
the midpoint of a straight line between two such latents is shorter than that (by about
``1/sqrt(2)``), where the decoder saw few training latents; the great circle keeps it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar, Self

import numpy as np
from latentserve.server import codecs
from latentserve.server.errors import InvalidArgument, Unsupported, shown
from latentserve.server.params import RequestParams, SampleParams, Temperature, resolve_seed
from latentserve.server.pipelines.base import stream_rows
from pydantic import Field

MIN_FRAMES, MAX_FRAMES = 2, 64


def slerp(a: np.ndarray, b: np.ndarray, frames: int) -> np.ndarray:
    """``frames`` points from ``a`` to ``b`` (same shape) on the great circle through them,
    as float32 with the ends exactly ``a`` and ``b``; a straight line where they are
    (anti)parallel and the circle is undefined."""
    x, y = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    t = np.linspace(0.0, 1.0, frames)[:, None]
    cos = float(x @ y / max(np.linalg.norm(x) * np.linalg.norm(y), 1e-300))
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if np.sin(omega) < 1e-6:
        path = (1.0 - t) * x + t * y
    else:
        path = (np.sin((1.0 - t) * omega) * x + np.sin(t * omega) * y) / np.sin(omega)
    out = path.astype(np.float32).reshape(frames, *a.shape)
    out[0], out[-1] = a, b
    return out


class InterpolateParams(RequestParams):
    """What every interpolation has: the two seeds and how many frames, ends included."""

    noun: ClassVar[str] = "an interpolation parameter"

    seed_a: int | None = Field(default=None, description="the first frame's seed")
    seed_b: int | None = Field(default=None, description="the last frame's seed")
    frames: int = Field(
        default=8, description=f"frames, both ends included ({MIN_FRAMES}..{MAX_FRAMES})"
    )

    def check(self, max_n: int) -> Self:
        """Bound ``frames`` and resolve unset seeds (the response reports them)."""
        self.check_frames()
        return self.model_copy(
            update={name: resolve_seed(getattr(self, name), name) for name in ("seed_a", "seed_b")}
        )

    def check_frames(self) -> None:
        if not MIN_FRAMES <= self.frames <= MAX_FRAMES:
            raise InvalidArgument(
                "frames", f"must be between {MIN_FRAMES} and {MAX_FRAMES}, got {shown(self.frames)}"
            )

    @property
    def seeds(self) -> tuple[int, int]:
        if self.seed_a is None or self.seed_b is None:
            raise RuntimeError("parameters used before check() resolved the seeds")
        return self.seed_a, self.seed_b

    def sample_params(self, sample_cls: type[SampleParams]) -> SampleParams:
        """The ``sample`` parameters each frame is rendered with: the fields both share."""
        shared = {
            name: getattr(self, name)
            for name in self.model_fields_set
            if name in sample_cls.model_fields
        }
        return sample_cls.model_validate({**shared, "n": self.frames, "seed": self.seeds[0]})


class PriorInterpolateParams(Temperature, InterpolateParams):
    """One-shot samplers: seeds at a temperature, or two images for models that encode."""

    kind: ClassVar[str] = "prior"

    image_a: bytes | None = Field(default=None, description="PNG: interpolate from its latent")
    image_b: bytes | None = Field(default=None, description="PNG: interpolate to its latent")

    def check(self, max_n: int) -> Self:
        images = (self.image_a is not None, self.image_b is not None)
        if not any(images):
            return super().check(max_n)
        if not all(images):
            missing = "image_b" if images[0] else "image_a"
            raise InvalidArgument(missing, "give both image_a and image_b, or neither")
        for name in ("seed_a", "seed_b", "temperature"):
            if name in self.model_fields_set:
                raise InvalidArgument(name, "only applies between seeds, not between images")
        self.check_frames()
        return self

    @property
    def between_images(self) -> bool:
        return self.image_a is not None


class GaussianInterpolation:
    """``interpolate`` for ``ItemwisePipeline`` kinds whose ``draw`` rows are standard normal
    (and, with ``image_a``/``image_b``, whose encoder and decoder round-trip a latent)."""

    async def interpolate(
        self, params: InterpolateParams, chunk: int
    ) -> AsyncIterator[tuple[int, np.ndarray]]:
        """``(offset, frames)`` chunks along the slerp; the next computes while one is sent."""
        pipeline: Any = self
        if isinstance(params, PriorInterpolateParams) and params.between_images:
            rows, render = await self._image_path(params)
        else:
            seed_a, seed_b = params.seeds
            ends = pipeline.draw(seed_a, 1)[0], pipeline.draw(seed_b, 1)[0]
            rows = slerp(*ends, params.frames)
            sample = params.sample_params(pipeline.params_for["sample"])

            async def render(part: np.ndarray) -> np.ndarray:
                return await pipeline.sample_items(part, sample, None)

        async for item in stream_rows(rows, chunk, render):
            yield item

    async def _image_path(self, params: PriorInterpolateParams) -> tuple[np.ndarray, Any]:
        """Slerp between the two images' latents (all groups as one vector), decoded."""
        pipeline: Any = self
        if not {"encoder", "decoder"} <= set(pipeline.manifest.graphs):
            raise Unsupported(
                f"model {pipeline.label} cannot encode images: interpolate between seeds"
            )
        spec, limit = pipeline.manifest.image, pipeline.serving.max_image_pixels
        assert params.image_a is not None and params.image_b is not None
        images = codecs.pngs_to_batch(
            [params.image_a, params.image_b], spec, limit, fields=["image_a", "image_b"]
        )
        groups = await pipeline._latents(images)
        names = list(groups)
        sizes = [int(np.prod(groups[g].shape[1:])) for g in names]
        flat = np.concatenate([groups[g].reshape(2, -1) for g in names], axis=1)
        rows = slerp(flat[0], flat[1], params.frames)

        async def render(part: np.ndarray) -> np.ndarray:
            pieces = np.split(part, np.cumsum(sizes)[:-1], axis=1)
            latents = {
                g: piece.reshape(-1, *groups[g].shape[1:]).astype(np.float32)
                for g, piece in zip(names, pieces, strict=True)
            }
            return (await pipeline.run("decoder", latents))["image"]

        return rows, render
