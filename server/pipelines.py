"""Pipelines: numpy orchestration of a model's graphs, keyed by how the model samples.

AE, VAE and GAN generators all sample as "latent -> decoder", so one ``latent_decoder``
pipeline serves them; the manifest's ``pipeline`` field picks it. Noise is drawn here per
request from its own seed (``Generator(Philox(seed))``), never from a shared stream, so
the same (model, seed, n, temperature) gives the same images whatever shares the batch and
however the request is chunked.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import numpy as np
from latentserve.server.batcher import Batcher
from latentserve.server.errors import Unsupported
from latentserve.server.metrics import ServerMetrics
from latentserve.server.runtime import Runtime
from latentserve.server.settings import ServingOptions

from latentserve.manifest import Manifest

# The graph I/O contract of latentserve.manifest for this pipeline kind.
_CONTRACT = {
    "encoder": ({"image"}, {"latent"}),
    "decoder": ({"latent"}, {"image"}),
    "sampler": ({"noise", "temperature"}, {"image"}),
}
_NEEDS = {"sample": ("sampler",), "encode": ("encoder",), "reconstruct": ("encoder", "decoder")}


def draw_noise(seed: int, n: int, shape: list[int]) -> np.ndarray:
    """Standard-normal prior noise for one request, reproducible from its seed alone."""
    rng = np.random.Generator(np.random.Philox(seed))
    return rng.standard_normal((n, *shape), dtype=np.float32)


class LatentDecoderPipeline:
    """Sample via the ``sampler`` graph, encode via ``encoder``, reconstruct via both."""

    kind = "latent_decoder"

    def __init__(
        self,
        manifest: Manifest,
        graphs: dict[str, Runtime],
        serving: ServingOptions,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.manifest = manifest
        self.label = f"{manifest.name}@{manifest.version}"
        self._check_contract(manifest)
        self._batchers = {
            role: Batcher(
                runtime,
                max_batch_size=serving.max_batch_size,
                max_queue_delay_ms=serving.max_queue_delay_ms,
                max_queue_size=serving.max_queue_size,
                max_concurrent_batches=serving.max_concurrent_batches,
                model=self.label,
                graph=role,
                metrics=metrics,
            )
            for role, runtime in graphs.items()
        }

    def _check_contract(self, manifest: Manifest) -> None:
        for role, spec in manifest.graphs.items():
            inputs, outputs = _CONTRACT[role]
            have_in = {t.name for t in spec.inputs}
            have_out = {t.name for t in spec.outputs}
            if have_in != inputs or not outputs <= have_out:
                raise ValueError(
                    f"{self.label}: graph {role!r} has inputs {sorted(have_in)} and outputs "
                    f"{sorted(have_out)}; the latent_decoder contract needs inputs "
                    f"{sorted(inputs)} and outputs including {sorted(outputs)}"
                )

    def require(self, capability: str) -> None:
        """Refuse clearly when the model cannot do ``capability``; never fake it."""
        missing = [g for g in _NEEDS[capability] if g not in self._batchers]
        if capability not in self.manifest.capabilities or missing:
            raise Unsupported(
                f"model {self.label} ({self.manifest.family}) does not support {capability}: "
                f"its capabilities are {', '.join(self.manifest.capabilities) or 'none'}"
            )

    async def sample(self, n: int, seed: int, temperature: float) -> np.ndarray:
        self.require("sample")
        return await self._sample_part(draw_noise(seed, n, self.manifest.latent.shape), temperature)

    async def sample_stream(
        self, n: int, seed: int, temperature: float, chunk: int
    ) -> AsyncIterator[tuple[int, np.ndarray]]:
        """Yield ``(offset, images)`` chunks; the next chunk computes while this one is sent."""
        self.require("sample")
        noise = draw_noise(seed, n, self.manifest.latent.shape)
        starts = list(range(0, n, chunk))

        def start(i: int) -> asyncio.Task[np.ndarray]:
            part = noise[starts[i] : starts[i] + chunk]
            return asyncio.ensure_future(self._sample_part(part, temperature))

        task = start(0)
        try:
            for i, offset in enumerate(starts):
                images = await task
                if i + 1 < len(starts):
                    task = start(i + 1)
                yield offset, images
        finally:
            task.cancel()

    async def _sample_part(self, noise: np.ndarray, temperature: float) -> np.ndarray:
        temperatures = np.full((noise.shape[0],), temperature, dtype=np.float32)
        out = await self._batchers["sampler"].submit({"noise": noise, "temperature": temperatures})
        return out["image"]

    async def encode(self, images: np.ndarray) -> np.ndarray:
        self.require("encode")
        return (await self._batchers["encoder"].submit({"image": images}))["latent"]

    async def reconstruct(self, images: np.ndarray) -> np.ndarray:
        self.require("reconstruct")
        latent = (await self._batchers["encoder"].submit({"image": images}))["latent"]
        return (await self._batchers["decoder"].submit({"latent": latent}))["image"]

    async def close(self) -> None:
        await asyncio.gather(*(b.close() for b in self._batchers.values()))


PipelineFactory = Callable[..., LatentDecoderPipeline]

# Closed registry: a manifest names its pipeline kind, never an import path.
PIPELINES: dict[str, PipelineFactory] = {"latent_decoder": LatentDecoderPipeline}
