"""DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): a deterministic multistep ODE solver in
data prediction, stepping exactly in log-SNR ``lambda = log(sqrt(ab) / sqrt(1 - ab))``.

The first step has no earlier x0 and is first order (the same as DDIM, eta 0). The final
step goes to ``t = 0`` with ``ab = 1``, where lambda is infinite and the exact solution is
the latest x0 estimate, so the result is that estimate (first order, as in the paper's
reference code and k-diffusion).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from latentserve.server.samplers.base import Sampler, SamplerState
from latentserve.server.samplers.schedule import NoiseSchedule


def _log_snr(ab: float) -> float:
    return 0.5 * (np.log(ab) - np.log1p(-ab))


@dataclass(frozen=True)
class DPMSolverPP2MSampler(Sampler):
    name: ClassVar[str] = "dpmpp_2m"
    history_length: ClassVar[int] = 1

    def needs_noise(self) -> bool:
        return False

    def update(
        self,
        schedule: NoiseSchedule,
        state: SamplerState,
        x0: np.ndarray,
        eps: np.ndarray,
        noise: np.ndarray | None,
    ) -> np.ndarray:
        if state.t_next is None:
            return x0
        ab, ab_next = schedule.alpha_bar(state.t), schedule.alpha_bar(state.t_next)
        h = _log_snr(ab_next) - _log_snr(ab)
        d = x0
        if state.history:
            ab_prev = schedule.alpha_bar(int(state.timesteps[state.index - 1]))
            r = (_log_snr(ab) - _log_snr(ab_prev)) / h
            d = (1.0 + 0.5 / r) * x0 - (0.5 / r) * state.history[-1]
        sigma_ratio = np.sqrt((1.0 - ab_next) / (1.0 - ab))
        return sigma_ratio * state.x - np.sqrt(ab_next) * np.expm1(-h) * d
