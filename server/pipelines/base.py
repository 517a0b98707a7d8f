"""What every pipeline shares: one batcher per graph, the contract check, and the parts of
the domain calls that do not depend on how the model samples (encode, reconstruct,
log-prob, chunked streaming).

A pipeline kind only says which graphs it needs for each capability, what their I/O
contract is, and how ``sample`` turns per-request randomness into images.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from latentserve.server.engine.batcher import Batcher
from latentserve.server.engine.jobs import Progress
from latentserve.server.errors import InvalidArgument, Unsupported, shown
from latentserve.server.metrics import ServerMetrics
from latentserve.server.params import RequestParams, SampleParams, TemperatureParams
from latentserve.server.pipelines.noise import draw_noise
from latentserve.server.repository.runtime import Runtime
from latentserve.server.settings import ServingOptions

from latentserve.manifest import Manifest

Arrays = dict[str, np.ndarray]
# Graph role -> (input names it must have exactly, output names it must include).
Contract = dict[str, tuple[set[str], set[str]]]


class GraphPipeline(ABC):
    kind: str
    #: The parameters each generating method takes (see ``latentserve.server.params``).
    params_for: dict[str, type[RequestParams]] = {"sample": TemperatureParams}
    #: Graphs each capability needs.
    needs: dict[str, tuple[str, ...]] = {
        "encode": ("encoder",),
        "reconstruct": ("encoder", "decoder"),
        "log_prob": ("log_prob",),
    }

    def __init__(
        self,
        manifest: Manifest,
        graphs: dict[str, Runtime],
        serving: ServingOptions,
        metrics: ServerMetrics | None = None,
        version_dir: Path | None = None,
    ) -> None:
        self.manifest = manifest
        self.version_dir = version_dir or Path(".")
        self.serving = serving
        self.metrics = metrics
        self.label = f"{manifest.name}@{manifest.version}"
        self._check_contract(self.contract(manifest))
        self._batchers = {
            role: Batcher(
                runtime,
                max_batch_size=serving.max_batch_size,
                max_queue_delay_ms=self.queue_delay_ms(role, serving),
                max_queue_size=serving.max_queue_size,
                max_concurrent_batches=serving.max_concurrent_batches,
                balance=self.balanced(role),
                model=self.label,
                graph=role,
                metrics=metrics,
            )
            for role, runtime in graphs.items()
        }

    # -- what a pipeline kind defines ------------------------------------------------------

    @abstractmethod
    def contract(self, manifest: Manifest) -> Contract:
        """The I/O each graph of this model must have under this pipeline kind."""

    @abstractmethod
    async def sample(self, params: SampleParams, progress: Progress | None = None) -> np.ndarray:
        """``params.n`` images for checked parameters (see ``prepare``)."""

    @abstractmethod
    def sample_stream(
        self, params: SampleParams, chunk: int
    ) -> AsyncIterator[tuple[int, np.ndarray]]:
        """``(offset, images)`` chunks of the same images ``sample`` gives."""

    def queue_delay_ms(self, role: str, serving: ServingOptions) -> float:
        return serving.max_queue_delay_ms

    def balanced(self, role: str) -> bool:
        """Whether the ``role`` batcher shares a backlog evenly among its free slots."""
        return False

    # -- shared behaviour ------------------------------------------------------------------

    def _check_contract(self, contract: Contract) -> None:
        for role, spec in self.manifest.graphs.items():
            if role not in contract:
                raise ValueError(
                    f"{self.label}: graph {role!r} has no place in the {self.kind} pipeline "
                    f"(expected roles: {', '.join(sorted(contract))})"
                )
            inputs, outputs = contract[role]
            have_in = {t.name for t in spec.inputs}
            have_out = {t.name for t in spec.outputs}
            if have_in != inputs or not outputs <= have_out:
                raise ValueError(
                    f"{self.label}: graph {role!r} has inputs {sorted(have_in)} and outputs "
                    f"{sorted(have_out)}; the {self.kind} contract needs inputs "
                    f"{sorted(inputs)} and outputs including {sorted(outputs)}"
                )

    def require(self, capability: str) -> None:
        """Refuse clearly when the model cannot do ``capability``; never fake it."""
        missing = [g for g in self.needs.get(capability, ("?",)) if g not in self._batchers]
        if capability not in self.manifest.capabilities or missing:
            raise Unsupported(
                f"model {self.label} ({self.manifest.family}) does not support {capability}: "
                f"its capabilities are {', '.join(self.manifest.capabilities) or 'none'}"
            )

    def prepare(self, raw: Mapping[str, Any], method: str = "sample") -> Any:
        """A request's parameters, parsed, checked, with its seed resolved and the model's
        defaults in place of what the client left out."""
        self.require(method)
        params = self.params_for[method].parse(raw, self.label).check(self.serving.max_n)
        return params.with_defaults(self.parameter_defaults())

    def parameter_defaults(self) -> dict[str, Any]:
        """Defaults this model's manifest sets for parameters a request may leave out."""
        return {"temperature": self.manifest.latent.default_temperature}

    def interpolate(self, params: Any, chunk: int) -> AsyncIterator[tuple[int, np.ndarray]]:
        """``(offset, frames)`` chunks between two seeds: kinds with a continuous prior
        override this (``interpolation.py``); ``prepare`` refuses the rest first."""
        raise Unsupported(f"model {self.label} ({self.manifest.family}) cannot interpolate")

    async def run(self, role: str, inputs: Arrays) -> Arrays:
        return await self._batchers[role].submit(inputs)

    async def encode(self, images: np.ndarray) -> Arrays:
        """Every latent group of ``images``, by group name, in the manifest's order."""
        self.require("encode")
        return await self._latents(images)

    async def reconstruct(self, images: np.ndarray) -> np.ndarray:
        self.require("reconstruct")
        return (await self.run("decoder", await self._latents(images)))["image"]

    async def _latents(self, images: np.ndarray) -> Arrays:
        out = await self.run("encoder", {"image": images})
        return {g.name: out[g.name] for g in self.manifest.latent.encoded()}

    def log_prob_kind(self, samples: int) -> str:
        """What ``log_prob`` with ``samples`` noise draws computes: exact, elbo or IW bound."""
        self.require("log_prob")
        kind = self.manifest.likelihood or "elbo"
        if not self.log_prob_is_sampled:
            if samples != 1:
                raise InvalidArgument(
                    "samples",
                    f"model {self.label} computes its log-probability ({kind}) without "
                    f"sampling, so samples must be 1, got {shown(samples)}",
                )
            return kind
        return "importance_weighted" if samples > 1 else kind

    @property
    def log_prob_is_sampled(self) -> bool:
        spec = self.manifest.graphs.get("log_prob")
        return spec is not None and any(t.name == "noise" for t in spec.inputs)

    async def log_prob(
        self, images: np.ndarray, samples: int, seed: int, chunk_work: int | None = None
    ) -> np.ndarray:
        """Bits/dim per image: exact, or a bound estimated with ``samples`` noise draws.

        With ``chunk_work`` the images go to the graph one part at a time, each part at most
        ``chunk_work`` images x samples (at least one image), so the memory one request
        takes is bounded by that, not by what it asked for. The noise is drawn for the whole
        request first, so the numbers do not depend on the chunking.
        """
        self.log_prob_kind(samples)
        inputs = {"image": images}
        if self.log_prob_is_sampled:
            noise_spec = next(
                t for t in self.manifest.graphs["log_prob"].inputs if t.name == "noise"
            )
            dims = [int(d) for d in noise_spec.shape[2:]]
            inputs["noise"] = draw_noise(seed, images.shape[0], [samples, *dims])
        n = images.shape[0]
        per_call = n if chunk_work is None else max(1, chunk_work // samples)
        parts = []
        for start in range(0, n, per_call):
            part = {name: array[start : start + per_call] for name, array in inputs.items()}
            parts.append((await self.run("log_prob", part))["bits_per_dim"])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def close(self) -> None:
        await asyncio.gather(*(b.close() for b in self._batchers.values()))


class ItemwisePipeline(GraphPipeline):
    """Kinds whose items are independent given their randomness rows (one-shot decoders,
    autoregressive priors): a request can be cut into chunks that give the same images."""

    @abstractmethod
    def draw(self, seed: int, n: int) -> np.ndarray:
        """All the randomness ``n`` samples need, one row per item (chunks slice it)."""

    def randomness(self, params: SampleParams) -> np.ndarray:
        """A request's rows: ``draw`` from its seed. Kinds whose parameters add randomness
        of their own (a second seed) append it to each row here."""
        return self.draw(params.resolved_seed, params.n)

    @abstractmethod
    async def sample_items(
        self, randomness: np.ndarray, params: SampleParams, progress: Progress | None
    ) -> np.ndarray:
        """Images for the items whose randomness rows are given."""

    async def sample(self, params: SampleParams, progress: Progress | None = None) -> np.ndarray:
        randomness = self.randomness(params)
        return await self.sample_items(randomness, params, progress)

    async def sample_stream(
        self, params: SampleParams, chunk: int
    ) -> AsyncIterator[tuple[int, np.ndarray]]:
        """Yield ``(offset, images)`` chunks; the next chunk computes while this one is sent."""
        randomness = self.randomness(params)

        async def render(part: np.ndarray) -> np.ndarray:
            return await self.sample_items(part, params, None)

        async for item in stream_rows(randomness, chunk, render):
            yield item


async def stream_rows(
    rows: np.ndarray, chunk: int, render: Callable[[np.ndarray], Awaitable[np.ndarray]]
) -> AsyncIterator[tuple[int, np.ndarray]]:
    """``(offset, render(rows[offset:offset + chunk]))`` in order; the next chunk computes
    while this one is sent."""
    starts = list(range(0, len(rows), chunk))

    def start(i: int) -> asyncio.Task[np.ndarray]:
        return asyncio.ensure_future(render(rows[starts[i] : starts[i] + chunk]))

    task = start(0)
    try:
        for i, offset in enumerate(starts):
            images = await task
            if i + 1 < len(starts):
                task = start(i + 1)
            yield offset, images
    finally:
        task.cancel()
