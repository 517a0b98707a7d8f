"""Euler ancestral, as k-diffusion samples VP models: integrate in
``sigma = sqrt((1 - ab) / ab)``, where ``x_sigma = x_vp * sqrt(1 + sigma^2) = x0 + sigma eps``.

Each step goes down to ``sigma_down`` with one Euler step (the derivative dx/dsigma is the
model's eps) and adds fresh noise of ``sigma_up`` back, so that
``sigma_down^2 + sigma_up^2 = sigma_next^2``. The state stays VP; only the step converts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from latentserve.server.samplers.base import Sampler, SamplerState
from latentserve.server.samplers.schedule import NoiseSchedule


@dataclass(frozen=True)
class EulerAncestralSampler(Sampler):
    name: ClassVar[str] = "euler_a"

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
        ab, ab_next = schedule.alpha_bar(state.t), schedule.alpha_bar(state.t_next)
        sigma, sigma_next = np.sqrt((1.0 - ab) / ab), np.sqrt((1.0 - ab_next) / ab_next)
        sigma_up = sigma_next * np.sqrt(1.0 - (sigma_next / sigma) ** 2)
        sigma_down = np.sqrt(sigma_next**2 - sigma_up**2)
        x_sigma = state.x / np.sqrt(ab) + (sigma_down - sigma) * eps + sigma_up * noise
        return x_sigma * np.sqrt(ab_next)
