"""The inpainting helpers: the kept mask at the sample's resolution, and holding a job's
kept region to its noised original."""

from __future__ import annotations

import numpy as np
from latentserve.server.pipelines.inpainting import KeptRegion, latent_keep_mask
from latentserve.server.samplers import NoiseSchedule
from latentserve.server.samplers.base import SamplerState

from latentserve.noise_schedule import alphas_cumprod


def test_a_latent_position_is_kept_only_where_all_its_pixels_are() -> None:
    keep = np.ones((28, 28), dtype=bool)
    keep[:, 16:] = False  # latent columns 4.. repainted
    keep[0, 0] = False  # one pixel of the block under latent (0, 0)
    mask = latent_keep_mask(keep, (4, 7, 7))
    assert mask.shape == (1, 1, 7, 7) and mask.dtype == np.float32
    expected = np.zeros((7, 7), np.float32)
    expected[:, :4] = 1
    expected[0, 0] = 0
    np.testing.assert_array_equal(mask[0, 0], expected)
    # same resolution (pixel diffusion): the mask itself
    np.testing.assert_array_equal(latent_keep_mask(keep, (1, 28, 28))[0, 0], keep)


def test_the_kept_region_follows_the_noise_level_and_ends_at_the_original() -> None:
    schedule = NoiseSchedule(alphas_cumprod("linear", 100))
    rng = np.random.default_rng(0)
    original, noise, x = (rng.standard_normal((2, 1, 4, 4)) for _ in range(3))
    keep = np.zeros((1, 1, 4, 4))
    keep[..., :2] = 1
    kept = KeptRegion(schedule, original, noise, keep)
    state = SamplerState(x=x.astype(np.float32), timesteps=np.array([60, 20]))
    held = kept.hold(state)
    ab = schedule.alpha_bar(60)
    expected = np.sqrt(ab) * original + np.sqrt(1 - ab) * noise
    np.testing.assert_allclose(held.x[..., :2], expected[..., :2], rtol=1e-6)
    np.testing.assert_array_equal(held.x[..., 2:], state.x[..., 2:])  # repainted: untouched
    done = SamplerState(x=x.astype(np.float32), timesteps=np.array([60, 20]), index=2)
    np.testing.assert_allclose(kept.hold(done).x[..., :2], original[..., :2], rtol=1e-6)
