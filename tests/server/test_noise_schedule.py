"""The one beta-schedule formula (``latentserve.noise_schedule``), checked by hand: training
trains with it, exporters write its result, schema 3 manifests are read through it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from latentserve.noise_schedule import alphas_cumprod, betas


def test_linear_schedule() -> None:
    linear = betas("linear", 5, 1e-4, 0.02)
    assert linear.dtype == np.float64
    expected = [1e-4 + i * (0.02 - 1e-4) / 4 for i in range(5)]
    assert linear.tolist() == pytest.approx(expected, rel=1e-12)
    ab = alphas_cumprod("linear", 1000)
    np.testing.assert_allclose(1.0 - ab / np.concatenate([[1.0], ab[:-1]]), betas("linear", 1000))


def test_cosine_schedule_by_hand() -> None:
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    T = 4
    expected = [min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), 0.999) for i in range(T)]
    cosine = betas("cosine", T, 1e-4, 0.02)
    assert cosine.tolist() == pytest.approx(expected, rel=1e-12)
    assert cosine[-1] == 0.999  # ᾱ(1) is ~0: the last beta is clipped
    long = betas("cosine", 1000, 1e-4, 0.02)
    assert bool((long[1:] >= long[:-1]).all()) and long.max() == 0.999
    ab = alphas_cumprod("cosine", 1000)
    f = np.array([alpha_bar(t / 1000) for t in range(1, 1001)]) / alpha_bar(0)
    np.testing.assert_allclose(ab[:-1], f[:-1], rtol=1e-9)  # the telescoping product
    assert ab[-1] == pytest.approx(ab[-2] * 0.001)  # after the clipped last beta


def test_an_unknown_beta_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown beta_schedule 'sqrt'"):
        betas("sqrt", 10)
