"""The GAN pipeline: one ``sampler`` graph call per batch from ``z`` and the controls.

A request's randomness is its ``z`` rows (``draw_noise(seed, n, latent.shape)``, the same
draw as the one-shot pipeline's prior noise) and, for a style-based generator, a noise
row per image for its layers from a second stream of the same seed, plus the ``mix_seed``
latents when mixing. Image ``i`` of a request mixed with ``mix_seed = s`` takes its styles
from ``mix_layer`` on from the ``z`` that image ``i`` of a request with ``seed = s`` has.
``interpolate`` slerps those rows (``z`` and layer noise together) between two seeds, so
its end frames are ``sample``'s images for n = 1 with each seed. The generator has no
encoder and no likelihood: ``encode``, ``reconstruct`` and ``log_prob`` are refused as
capabilities the model lacks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from latentserve.server.engine.jobs import Progress
from latentserve.server.errors import InvalidArgument, shown
from latentserve.server.params import SampleParams, resolve_seed
from latentserve.server.pipelines.base import Contract, GraphPipeline, ItemwisePipeline
from latentserve.server.pipelines.gan_params import (
    GanInterpolateParams,
    StyleParams,
    TruncationParams,
)
from latentserve.server.pipelines.interpolation import GaussianInterpolation
from latentserve.server.pipelines.noise import draw_noise

from latentserve.manifest import Manifest

#: Which stream of a request's seed the layer noise comes from (z is stream 0).
LAYER_NOISE_STREAM = 1
STYLE_INPUTS = {"mix_z", "mix_layer", "layer_noise"}


def draw_layer_noise(seed: int, n: int, size: int) -> np.ndarray:
    """Standard normals for every layer's noise map, independent of the seed's ``z``."""
    stream = np.random.Philox(np.random.SeedSequence([seed, LAYER_NOISE_STREAM]))
    return np.random.Generator(stream).standard_normal((n, size), dtype=np.float32)


class GanPipeline(GaussianInterpolation, ItemwisePipeline):
    kind = "gan"
    needs = {**GraphPipeline.needs, "sample": ("sampler",), "interpolate": ("sampler",)}

    def __init__(self, manifest: Manifest, *args: Any, **kwargs: Any) -> None:
        if manifest.generator is None:
            raise ValueError(f"{manifest.name}@{manifest.version}: no generator section")
        self.style_layers = manifest.generator.style_layers
        self.z_size = int(np.prod(manifest.latent.shape))
        self.params_for = {
            "sample": StyleParams if self.style_layers else TruncationParams,
            "interpolate": GanInterpolateParams,
        }
        super().__init__(manifest, *args, **kwargs)
        sampler = manifest.graphs["sampler"]
        noise = [t for t in sampler.inputs if t.name == "layer_noise"]
        self.noise_size = int(noise[0].shape[1]) if noise else 0

    def contract(self, manifest: Manifest) -> Contract:
        inputs = {"z", "truncation"} | (STYLE_INPUTS if self.style_layers else set())
        return {"sampler": (inputs, {"image"})}

    def prepare(self, raw: Mapping[str, Any], method: str = "sample") -> SampleParams:
        """As every kind, plus the mixing rules that need the model's style count."""
        params = super().prepare(raw, method)
        if not isinstance(params, StyleParams):
            return params
        if params.mix_seed is None:
            if params.mix_layer is not None:
                raise InvalidArgument("mix_layer", "needs mix_seed (the latent to mix in)")
            return params
        resolve_seed(params.mix_seed)  # the seed range, reported as mix_seed
        layer = self.style_layers // 2 if params.mix_layer is None else params.mix_layer
        if not 0 <= layer <= self.style_layers:
            raise InvalidArgument(
                "mix_layer",
                f"must be between 0 and {self.style_layers} (the model's style inputs), "
                f"got {shown(layer)}",
            )
        return params.model_copy(update={"mix_layer": layer})

    def draw(self, seed: int, n: int) -> np.ndarray:
        """``z`` and, for a style-based generator, the layer noise: one row per image."""
        z = draw_noise(seed, n, [self.z_size])
        if not self.noise_size:
            return z
        return np.concatenate([z, draw_layer_noise(seed, n, self.noise_size)], axis=1)

    def randomness(self, params: SampleParams) -> np.ndarray:
        rows = super().randomness(params)
        if isinstance(params, StyleParams) and params.mix_seed is not None:
            mix_z = draw_noise(params.mix_seed, params.n, [self.z_size])
            rows = np.concatenate([rows, mix_z], axis=1)
        return rows

    async def sample_items(
        self, randomness: np.ndarray, params: TruncationParams, progress: Progress | None
    ) -> np.ndarray:
        n = randomness.shape[0]
        z = randomness[:, : self.z_size]
        feeds = {"z": z, "truncation": np.full((n,), params.truncation, dtype=np.float32)}
        if self.style_layers:
            mixing = isinstance(params, StyleParams) and params.mix_seed is not None
            end = self.z_size + self.noise_size
            feeds["layer_noise"] = randomness[:, self.z_size : end]
            feeds["mix_z"] = randomness[:, end:] if mixing else z
            layer = params.mix_layer if mixing else self.style_layers
            feeds["mix_layer"] = np.full((n,), layer, dtype=np.int64)
        return (await self.run("sampler", feeds))["image"]
