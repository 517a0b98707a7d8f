"""Seeds derived from a run's seed, one independent stream per purpose.

Every random draw in training and evaluation comes from a generator seeded here, never
from a global stream, so a step's noise depends only on (seed, purpose, step): runs are
reproducible and a resumed run draws exactly what the uninterrupted one would have.
"""

from __future__ import annotations

import numpy as np
import torch

DATA_ORDER = 0
TRAIN_NOISE = 1
EVAL_NOISE = 2


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that mixes ``parts`` well (numpy's SeedSequence)."""
    state = np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))


def torch_generator(*parts: int) -> torch.Generator:
    """A CPU torch generator seeded from ``parts``."""
    return torch.Generator().manual_seed(derive_seed(*parts))
