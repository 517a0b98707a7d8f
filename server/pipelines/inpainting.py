"""Inpainting: hold a job's kept region to its (noised) original at every step.

A mask marks what to keep; the rest is repainted by ordinary sampling. After every step
(and before the first) the kept region of x_t is replaced by the original sample noised to
that step's level, ``sqrt(ab) * x0 + sqrt(1 - ab) * noise`` with the job's own fixed noise,
so the model repaints the rest in agreement with it, and after the last step (``ab = 1``)
the kept region is the original exactly (Lugmayr et al. 2022, "RePaint", without the
resampling; the "legacy" inpainting of diffusers). The mask is per job, so jobs with
different masks, or none, share a denoiser batch unchanged.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from latentserve.server.samplers import NoiseSchedule
from latentserve.server.samplers.base import SamplerState
from PIL import Image


def latent_keep_mask(keep: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A pixel keep-mask (H, W) bool -> (1, 1, h, w) float32 at the sample's resolution.

    A sample position is kept only where every pixel it covers is kept (box-averaged to
    exactly 1): what the client asked to repaint is never held, at the price of repainting
    a little of the kept area along the mask's edge.
    """
    height, width = shape[-2:]
    unit = Image.fromarray(keep.astype(np.float32))  # mode "F"
    covered = np.asarray(unit.resize((width, height), Image.Resampling.BOX), dtype=np.float32)
    return (covered >= 1.0 - 1e-6).astype(np.float32)[None, None]


@dataclasses.dataclass(frozen=True, eq=False)
class KeptRegion:
    """The part of a job's sample that comes back as it went in."""

    schedule: NoiseSchedule
    original: np.ndarray  # the clean sample (n, *shape), e.g. the encoded image's latent
    noise: np.ndarray  # the job's fixed noise, same shape
    keep: np.ndarray  # 1 where kept, 0 where repainted; broadcasts against the sample

    def hold(self, state: SamplerState) -> SamplerState:
        """``state`` with its kept region at the original, noised to ``state``'s level."""
        t = None if state.done else state.t
        alpha_bar = self.schedule.alpha_bar(t)
        known = np.sqrt(alpha_bar) * self.original + np.sqrt(1.0 - alpha_bar) * self.noise
        x = self.keep * known + (1.0 - self.keep) * state.x
        return dataclasses.replace(state, x=x.astype(np.float32))

    def over(self, denoised: np.ndarray) -> np.ndarray:
        """A clean estimate (a preview) with the kept region shown as it will come back."""
        return self.keep * self.original + (1.0 - self.keep) * denoised
