"""The training noise schedule of a VP diffusion model, as the samplers need it.

Everything here is a pure function of ``alphas_cumprod`` (written ``ab`` below), which the
manifest's ``noise_schedule`` carries as the model was trained with it; the server never
recomputes it from a beta schedule. A trained timestep ``t`` means
``x_t = sqrt(ab[t]) x0 + sqrt(1 - ab[t]) eps``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

PredictionType = Literal["epsilon", "v_prediction"]


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    alphas_cumprod: np.ndarray
    prediction_type: PredictionType = "epsilon"
    #: Bounds for every x0 estimate (e.g. ``(-1, 1)`` for pixel models); None for latents.
    clip_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        ab = np.array(self.alphas_cumprod, dtype=np.float64)
        if ab.ndim != 1 or ab.size == 0 or not np.all((ab > 0) & (ab < 1)):
            raise ValueError("alphas_cumprod must be a non-empty 1-D array in (0, 1)")
        if np.any(np.diff(ab) >= 0):
            raise ValueError("alphas_cumprod must decrease with t")
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"unknown prediction_type {self.prediction_type!r}")
        ab.flags.writeable = False
        object.__setattr__(self, "alphas_cumprod", ab)

    @property
    def num_train_timesteps(self) -> int:
        return self.alphas_cumprod.size

    def alpha_bar(self, t: int | None) -> float:
        """``ab[t]``; ``None`` is the clean end of sampling, where ``ab = 1``."""
        return 1.0 if t is None else float(self.alphas_cumprod[t])

    def timesteps(self, steps: int) -> np.ndarray:
        """``steps`` trained timesteps to visit, descending, "trailing" spacing.

        Trailing spacing (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps
        are Flawed") starts at ``T - 1``, the only timestep whose x_t is close to the pure
        noise that sampling starts from; "leading" spacing (``0, T/steps, ...``) starts at
        ``T - T/steps`` and so denoises noise the model never saw at that t. After the last
        (smallest) timestep every sampler jumps to clean data, ``ab = 1``.
        """
        total = self.num_train_timesteps
        if not 1 <= steps <= total:
            raise ValueError(f"steps must be in [1, {total}], got {steps}")
        return (total - 1 - np.round(np.arange(steps) * (total / steps))).astype(np.int64)

    def x0_and_eps(
        self, x_t: np.ndarray, t: int | np.ndarray, model_output: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The model's estimates of (x0, eps) at ``x_t``; ``t`` is one timestep or one per row.

        When ``clip_range`` clips x0, eps is recomputed from the clipped x0 so the pair
        still reconstructs ``x_t`` exactly; samplers mix both, and a mismatched pair would
        drift off the noise level they assume.
        """
        ab = _per_row(self.alphas_cumprod[np.asarray(t, dtype=np.int64)], x_t.ndim)
        a, s = np.sqrt(ab), np.sqrt(1.0 - ab)
        if self.prediction_type == "epsilon":
            eps = model_output.astype(np.float64)
            x0 = (x_t - s * eps) / a
        else:  # v = a eps - s x0
            x0 = a * x_t - s * model_output
            eps = s * x_t + a * model_output
        if self.clip_range is not None:
            x0 = np.clip(x0, *self.clip_range)
            eps = (x_t - a * x0) / s
        return x0, eps


def _per_row(values: np.ndarray, ndim: int) -> np.ndarray:
    """A scalar or a ``(n,)`` array shaped to broadcast against ``(n, *shape)``."""
    return values.reshape(values.shape + (1,) * (ndim - values.ndim))
