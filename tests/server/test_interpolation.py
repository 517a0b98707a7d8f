"""Slerp and the interpolation parameters, without a server."""

from __future__ import annotations

import numpy as np
import pytest
from latentserve.server.errors import InvalidArgument
from latentserve.server.params import TemperatureParams
from latentserve.server.pipelines.diffusion_params import (
    DiffusionInterpolateParams,
    DiffusionParams,
)
from latentserve.server.pipelines.interpolation import PriorInterpolateParams, slerp


def test_slerp_keeps_the_ends_exactly_and_walks_the_great_circle() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3, 4)).astype(np.float32)
    b *= np.linalg.norm(a) / np.linalg.norm(b)  # equal norms: the arc keeps the norm
    path = slerp(a, b, 7)
    assert path.shape == (7, 3, 4) and path.dtype == np.float32
    assert np.array_equal(path[0], a) and np.array_equal(path[-1], b)
    norms = np.linalg.norm(path.reshape(7, -1), axis=1)
    np.testing.assert_allclose(norms, np.linalg.norm(a), rtol=1e-5)
    # equal angular steps: consecutive frames are equally far apart
    steps = np.linalg.norm(np.diff(path.reshape(7, -1), axis=0), axis=1)
    np.testing.assert_allclose(steps, steps[0], rtol=1e-4)
    straight_mid = np.linalg.norm((a + b) / 2)
    assert norms[3] > straight_mid  # where a straight line would shrink the latent


def test_slerp_of_parallel_latents_is_the_straight_line() -> None:
    a = np.ones(5, np.float32)
    path = slerp(a, 2 * a, 3)
    np.testing.assert_allclose(path[1], 1.5 * a)
    assert np.isfinite(slerp(a, -a, 4)).all()


def test_interpolation_takes_the_sample_fields_it_shares() -> None:
    params = PriorInterpolateParams.parse(
        {"seed_a": 1, "seed_b": 2, "frames": 3, "temperature": 0.5}, "m"
    )
    sample = params.check(64).sample_params(TemperatureParams)
    assert (sample.n, sample.seed, sample.temperature) == (3, 1, 0.5)
    diffusion = DiffusionInterpolateParams.parse({"steps": 7, "class_label": 2}, "m").check(64)
    frames = diffusion.sample_params(DiffusionParams)
    assert (frames.n, frames.steps, frames.class_label) == (8, 7, 2)
    assert frames.seed == diffusion.seed_a is not None and diffusion.seed_b is not None


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"frames": 1}, "frames"),
        ({"frames": 65}, "frames"),
        ({"frames": "4"}, "frames"),
        ({"seed_a": -1}, "seed_a"),
        ({"image_b": b"png"}, "image_a"),
        ({"image_a": b"png", "image_b": b"png", "temperature": 0.5}, "temperature"),
        ({"image_a": b"png", "image_b": b"png", "frames": 99}, "frames"),
    ],
)
def test_bad_interpolation_parameters_name_their_field(raw: dict, field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        PriorInterpolateParams.parse(raw, "m").check(64)
    assert caught.value.field == field
