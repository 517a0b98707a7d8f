"""DDIM (Song et al. 2021): jump to the next timestep along the estimated (x0, eps).

``eta`` scales the fresh noise: 0 is the deterministic sampler (an ODE solver), 1 draws
the same posterior as ancestral DDPM over the visited timesteps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from latentserve.server.samplers.base import Sampler, SamplerState
from latentserve.server.samplers.schedule import NoiseSchedule


@dataclass(frozen=True)
class DDIMSampler(Sampler):
    name: ClassVar[str] = "ddim"
    eta: float = 0.0

    def __post_init__(self) -> None:
        # Above 1 the eps coefficient below becomes the root of a negative number.
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1] for ddim, got {self.eta}")

    @classmethod
    def create(cls, eta: float = 0.0) -> DDIMSampler:
        return cls(eta=eta)

    def needs_noise(self) -> bool:
        return self.eta > 0.0

    def update(
        self,
        schedule: NoiseSchedule,
        state: SamplerState,
        x0: np.ndarray,
        eps: np.ndarray,
        noise: np.ndarray | None,
    ) -> np.ndarray:
        ab, ab_prev = schedule.alpha_bar(state.t), schedule.alpha_bar(state.t_next)
        sigma = self.eta * np.sqrt((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev))
        x = np.sqrt(ab_prev) * x0 + np.sqrt(1.0 - ab_prev - sigma**2) * eps
        return x if noise is None else x + sigma * noise
