"""The one-shot pipeline: prior noise -> one sampler graph call -> images.

AE, VAE and GAN generators sample as "latent -> decoder"; a hierarchical VAE's sampler
takes all its groups' noise at once, and a flow's sampler is its exact inverse. All of
them are one graph call from standard-normal noise, so one pipeline serves them and a new
family of this kind needs an export recipe, not server code.
"""

from __future__ import annotations

import numpy as np
from latentserve.server.engine.jobs import Progress
from latentserve.server.params import TemperatureParams
from latentserve.server.pipelines.base import Contract, GraphPipeline, ItemwisePipeline
from latentserve.server.pipelines.interpolation import GaussianInterpolation, PriorInterpolateParams
from latentserve.server.pipelines.noise import draw_noise

from latentserve.manifest import Manifest


class LatentDecoderPipeline(GaussianInterpolation, ItemwisePipeline):
    """Sample via the ``sampler`` graph, encode via ``encoder``, reconstruct via both;
    interpolate between seeds' noise (``sampler``) or images' latents (both)."""

    kind = "latent_decoder"
    params_for = {"sample": TemperatureParams, "interpolate": PriorInterpolateParams}
    needs = {**GraphPipeline.needs, "sample": ("sampler",), "interpolate": ("sampler",)}

    def contract(self, manifest: Manifest) -> Contract:
        groups = {g.name for g in manifest.latent.encoded()}
        # bounds estimated by sampling take the server's noise; exact densities take none
        log_prob_inputs = {"image", "noise"} if self.log_prob_is_sampled else {"image"}
        return {
            "encoder": ({"image"}, groups),
            "decoder": (groups, {"image"}),
            "sampler": ({"noise", "temperature"}, {"image"}),
            "log_prob": (log_prob_inputs, {"bits_per_dim"}),
        }

    def draw(self, seed: int, n: int) -> np.ndarray:
        return draw_noise(seed, n, self.manifest.latent.shape)

    async def sample_items(
        self, randomness: np.ndarray, params: TemperatureParams, progress: Progress | None
    ) -> np.ndarray:
        temperatures = np.full((randomness.shape[0],), params.temperature, dtype=np.float32)
        out = await self.run("sampler", {"noise": randomness, "temperature": temperatures})
        return out["image"]
