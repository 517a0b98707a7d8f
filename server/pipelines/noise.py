"""Per-request randomness, reproducible from the request's seed alone.

Every draw comes from ``Generator(Philox(seed))`` owned by one request, never from a shared
stream, so whatever shares a batch and however a request is chunked, the same (model,
seed, parameters) gives the same result over REST and gRPC.
"""

from __future__ import annotations

import numpy as np


def rng(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.Philox(seed))


def draw_noise(seed: int, n: int, shape: list[int]) -> np.ndarray:
    """Standard-normal noise of ``(n, *shape)`` for one request."""
    return rng(seed).standard_normal((n, *shape), dtype=np.float32)


def draw_uniform(seed: int, n: int, count: int) -> np.ndarray:
    """``count`` uniforms in [0, 1) per item: one per autoregressive sampling decision."""
    return rng(seed).random((n, count))
