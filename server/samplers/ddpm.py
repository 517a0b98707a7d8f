"""Ancestral DDPM (Ho et al. 2020): sample the posterior q(x_prev | x_t, x0 = estimate).

With fewer steps than training timesteps the betas are respaced over the visited
timesteps, ``beta = 1 - ab_t / ab_prev``, so the posterior is exact for the jump actually
taken; at ``steps == T`` this is the original sampler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from latentserve.server.samplers.base import Sampler, SamplerState
from latentserve.server.samplers.schedule import NoiseSchedule


@dataclass(frozen=True)
class DDPMSampler(Sampler):
    name: ClassVar[str] = "ddpm"

    def needs_noise(self) -> bool:
        return True

    def update(
        self,
        schedule: NoiseSchedule,
        state: SamplerState,
        x0: np.ndarray,
        eps: np.ndarray,
        noise: np.ndarray | None,
    ) -> np.ndarray:
        ab, ab_prev = schedule.alpha_bar(state.t), schedule.alpha_bar(state.t_next)
        beta = 1.0 - ab / ab_prev
        x0_coef = np.sqrt(ab_prev) * beta / (1.0 - ab)
        xt_coef = np.sqrt(1.0 - beta) * (1.0 - ab_prev) / (1.0 - ab)
        variance = beta * (1.0 - ab_prev) / (1.0 - ab)  # beta-tilde; 0 on the final step
        return x0_coef * x0 + xt_coef * state.x + np.sqrt(variance) * noise
