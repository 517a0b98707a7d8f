"""The one formula for a diffusion model's noise schedule: beta schedule → ``alphas_cumprod``.

Training trains with its result, the exporter writes that result into the manifest
(``noise_schedule.alphas_cumprod``), and the server steps through what the manifest says,
so no second copy of the formula can drift from the first. The manifest reads it too,
only to give schema 3 manifests (which named a schedule instead of writing it out) their
``alphas_cumprod``. numpy only: the server imports it without torch.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

BetaSchedule = Literal["linear", "cosine"]

COSINE_OFFSET = 0.008  # s of Nichol & Dhariwal (2021): keeps beta small near t = 0
MAX_BETA = 0.999  # their clip: the last cosine beta would otherwise be exactly 1


def betas(
    kind: BetaSchedule, num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02
) -> np.ndarray:
    """β_0..β_{T-1} in float64.

    linear: evenly from ``beta_start`` to ``beta_end``. cosine (Nichol & Dhariwal, 2021):
    ``ᾱ(t) = cos²(π/2 · (t/T + s) / (1 + s))`` and ``β_t = 1 - ᾱ(t+1)/ᾱ(t)``, clipped to
    0.999 so the last steps stay finite; it ignores the beta bounds.
    """
    if kind == "linear":
        return np.linspace(beta_start, beta_end, num_timesteps, dtype=np.float64)
    if kind == "cosine":
        steps = np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps
        alpha_bar = np.cos((steps + COSINE_OFFSET) / (1 + COSINE_OFFSET) * np.pi / 2) ** 2
        return np.minimum(1 - alpha_bar[1:] / alpha_bar[:-1], MAX_BETA)
    raise ValueError(f"unknown beta_schedule {kind!r}")


def alphas_cumprod(
    kind: BetaSchedule, num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02
) -> np.ndarray:
    """``ᾱ_t = Π_{s≤t} (1 - β_s)`` for t = 0..T-1, float64: ``x_t = sqrt(ᾱ_t) x_0 +
    sqrt(1 - ᾱ_t) ε``."""
    return np.cumprod(1.0 - betas(kind, num_timesteps, beta_start, beta_end))
