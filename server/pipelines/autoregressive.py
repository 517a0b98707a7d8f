"""The autoregressive-prior pipeline: the server drives the prior's step graph.

VQ-VAE-style models sample a discrete code map position by position in raster order
(for a two-level model: the top map, then the bottom map conditioned on it), then decode
it. Each position is one call of the prior's step graph through its batcher, so
concurrent sample requests share batched steps: requests at different positions batch
together, because the step graph computes logits for every position of every item and
each request reads its own position (a ``position`` step graph takes each item's position
and computes the logits there only). The code at a position is drawn from
``softmax(logits / temperature)`` by inverse CDF with a uniform drawn up front from the
request's seed, so the result does not depend on what shares a batch or on chunking.
"""

from __future__ import annotations

import numpy as np
from latentserve.server.engine.jobs import Progress
from latentserve.server.params import TemperatureParams
from latentserve.server.pipelines.base import Contract, GraphPipeline, ItemwisePipeline
from latentserve.server.pipelines.noise import draw_uniform
from latentserve.server.settings import ServingOptions

from latentserve.manifest import CodeMap, Manifest


def categorical(logits: np.ndarray, temperature: float, uniform: np.ndarray) -> np.ndarray:
    """One draw per row of ``logits`` (n, K) from softmax(logits / T), by inverse CDF."""
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    cdf = np.cumsum(np.exp(scaled), axis=1)
    cdf /= cdf[:, -1:]
    picks = (cdf < uniform[:, None]).sum(axis=1)
    return np.minimum(picks, logits.shape[1] - 1).astype(np.int64)


class AutoregressivePriorPipeline(ItemwisePipeline):
    kind = "autoregressive_prior"

    def __init__(self, manifest: Manifest, *args: object, **kwargs: object) -> None:
        if not manifest.codes:
            raise ValueError(f"{manifest.name}@{manifest.version}: no code maps in the manifest")
        self.needs = {
            **GraphPipeline.needs,
            "sample": ("decoder", *(c.prior for c in manifest.codes)),
        }
        super().__init__(manifest, *args, **kwargs)

    def contract(self, manifest: Manifest) -> Contract:
        names = {c.name for c in manifest.codes}
        contract: Contract = {
            "encoder": ({"image"}, names),
            "decoder": (names, {"image"}),
            "log_prob": ({"image"}, {"bits_per_dim"}),
        }
        for code_map in manifest.codes:
            inputs = {code_map.name, *code_map.conditions}
            if code_map.step == "position":
                inputs.add("position")
            contract[code_map.prior] = (inputs, {"logits"})
        return contract

    def queue_delay_ms(self, role: str, serving: ServingOptions) -> float:
        # Step calls come back to back from running requests: waiting for more only adds
        # latency per position. Under load, steps still merge while the batch slots are busy.
        if any(c.prior == role for c in self.manifest.codes):
            return 0.0
        return serving.max_queue_delay_ms

    @property
    def positions(self) -> int:
        return sum(c.height * c.width for c in self.manifest.codes)

    def draw(self, seed: int, n: int) -> np.ndarray:
        return draw_uniform(seed, n, self.positions)

    async def sample_items(
        self, randomness: np.ndarray, params: TemperatureParams, progress: Progress | None
    ) -> np.ndarray:
        """Step every code map position by position; progress counts positions."""
        codes: dict[str, np.ndarray] = {}
        offset = 0
        if progress is not None:
            progress.started(self.positions)
        for code_map in self.manifest.codes:
            size = code_map.height * code_map.width
            uniforms = randomness[:, offset : offset + size]
            codes[code_map.name] = await self._sample_map(
                code_map, codes, uniforms, params.temperature, progress, offset
            )
            offset += size
        return (await self.run("decoder", codes))["image"]

    async def _sample_map(
        self,
        code_map: CodeMap,
        earlier: dict[str, np.ndarray],
        uniforms: np.ndarray,
        temperature: float,
        progress: Progress | None,
        done_before: int,
    ) -> np.ndarray:
        n = uniforms.shape[0]
        codes = np.zeros((n, code_map.height, code_map.width), dtype=np.int64)
        conditions = {name: earlier[name] for name in code_map.conditions}
        for position in range(code_map.height * code_map.width):
            row, col = divmod(position, code_map.width)
            # safe to update ``codes`` in place below: the step has finished reading it
            inputs = {code_map.name: codes, **conditions}
            if code_map.step == "position":
                inputs["position"] = np.full(n, position, dtype=np.int64)
                logits = (await self.run(code_map.prior, inputs))["logits"]
            else:
                logits = (await self.run(code_map.prior, inputs))["logits"][:, :, row, col]
            codes[:, row, col] = categorical(logits, temperature, uniforms[:, position])
            if progress is not None:
                progress.step(done_before + position + 1, self.positions)
        return codes
