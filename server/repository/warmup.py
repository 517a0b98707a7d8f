"""A model version's first calls, made before any client's.

A version that loads (checksums match, the manifest validates, the graphs open) can still
fail when run: a graph whose outputs have the wrong shape, or that gives NaNs. And a graph
session's first run is slow (allocations, kernel choices). So at start, before the server
turns ready, and on reload, before ``name`` resolves to a new version, every capability
the version declares runs once on one item through its real pipeline and batchers, and
must give finite numbers. A model with several instances runs them once per instance: a
batcher gives each batch to the idle instance that got one least recently, so these calls,
made one after the other, reach every instance of every graph.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from latentserve.server import codecs
from latentserve.server.metrics import ServerMetrics
from latentserve.server.repository.store import LoadedModel

# The cheapest request of each sampling kind: one image, one step where steps are asked.
_SAMPLE = {"n": 1, "seed": 0}
_FEWEST_STEPS = {"steps": 1}
_PROMPT = {"prompt": "warm-up"}
_TWO_FRAMES = {"seed_a": 0, "seed_b": 1, "frames": 2}


class WarmUpFailed(ValueError):
    """A capability of the version failed or gave non-finite numbers on its first call."""


async def warm_up(model: LoadedModel, metrics: ServerMetrics | None = None) -> None:
    """Run each capability of ``model`` once; raise ``WarmUpFailed`` naming the first one
    that fails. How long it took is the ``model_warmup_seconds`` gauge (a startup probe's
    budget is the sum over the repository)."""
    start = time.perf_counter()
    rounds = model.serving.instance_count
    for capability in [c for c in model.manifest.capabilities for _ in range(rounds)]:
        try:
            outputs = await _call(model, capability)
        except Exception as exc:  # noqa: BLE001 - any failure refuses the version
            raise WarmUpFailed(f"{model.label}: warm-up {capability} failed: {exc}") from exc
        for array in outputs:
            if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
                raise WarmUpFailed(f"{model.label}: warm-up {capability} gave non-finite values")
    if metrics is not None:
        metrics.model_warmup.labels(model.label).set(time.perf_counter() - start)


async def _call(model: LoadedModel, capability: str) -> list[np.ndarray]:
    pipeline = model.pipeline
    if capability in ("sample", "text_to_image"):
        fields = pipeline.params_for[capability].model_fields
        raw: dict[str, Any] = _SAMPLE | (_FEWEST_STEPS if "steps" in fields else {})
        if capability == "text_to_image":
            raw |= _PROMPT
        return [await pipeline.sample(pipeline.prepare(raw, capability))]
    if capability == "interpolate":
        fields = pipeline.params_for[capability].model_fields
        raw = _TWO_FRAMES | (_FEWEST_STEPS if "steps" in fields else {})
        stream = pipeline.interpolate(pipeline.prepare(raw, capability), 2)
        return [images async for _, images in stream]
    spec = model.manifest.image
    blank = codecs.encode_png(np.zeros((spec.height, spec.width, spec.channels), np.uint8))
    batch = codecs.pngs_to_batch([blank], spec, spec.height * spec.width)
    if capability == "encode":
        return list((await pipeline.encode(batch)).values())
    if capability == "reconstruct":
        return [await pipeline.reconstruct(batch)]
    if capability == "log_prob":
        return [await pipeline.log_prob(batch, 1, 0)]
    raise WarmUpFailed(f"{model.label}: no warm-up for capability {capability!r}")
