"""The sampler contract, shared by every registered sampler, against an analytic denoiser.

Data is x0 ~ N(MU, S^2) independently per dimension, so the ideal denoiser is known in
closed form and a correct sampler must reproduce MU and S^2. Finite-step samplers
under-disperse (each deterministic step shrinks a Gaussian's spread, and the last step
returns a posterior mean), so each case states the variance it may lose at its step count;
the many-step cases must be exact within sampling error.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import pytest
from latentserve.server.samplers import (
    SAMPLERS,
    NoiseSchedule,
    Sampler,
    SamplerState,
    make_sampler,
    result,
)
from latentserve.server.samplers.ddpm import DDPMSampler

from latentserve.noise_schedule import alphas_cumprod

MU, S = 0.3, 0.5
ITEMS, SHAPE = 512, (1, 8, 8)  # 32768 values: standard error 0.003 (mean), 0.8% (variance)
T = 1000


def schedule_for(beta: str = "linear", prediction: str = "epsilon", **kw) -> NoiseSchedule:
    return NoiseSchedule(alphas_cumprod(beta, T), prediction_type=prediction, **kw)


def denoiser(schedule: NoiseSchedule, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The exact E[eps | x_t] (or the v it implies) for Gaussian data, row by row."""
    ab = schedule.alphas_cumprod[t.astype(np.int64)].reshape(-1, *[1] * (x.ndim - 1))
    a, s = np.sqrt(ab), np.sqrt(1.0 - ab)
    eps = s * (x - a * MU) / (ab * S**2 + 1.0 - ab)
    if schedule.prediction_type == "epsilon":
        return eps.astype(np.float32)
    x0 = (x - s * eps) / a
    return (a * eps - s * x0).astype(np.float32)


class Job:
    """One request's loop, with its own random stream, as the server would run it."""

    def __init__(self, sampler: Sampler, schedule: NoiseSchedule, steps: int, seed: int, n: int):
        self.sampler, self.schedule = sampler, schedule
        self.rng = np.random.default_rng(seed)
        self.state = sampler.start(schedule, steps, self.rng.standard_normal((n, *SHAPE)))

    def model_input(self) -> tuple[np.ndarray, np.ndarray]:
        return self.sampler.model_input(self.schedule, self.state)

    def advance(self, model_output: np.ndarray) -> None:
        noise = self.rng.standard_normal(self.state.x.shape) if self.sampler.needs_noise() else None
        self.state = self.sampler.step(self.schedule, self.state, model_output, noise)


def sample(sampler: Sampler, schedule: NoiseSchedule, steps: int, seed: int = 0) -> np.ndarray:
    job = Job(sampler, schedule, steps, seed, ITEMS)
    while not job.state.done:
        job.advance(denoiser(schedule, *job.model_input()))
    return result(job.state)


def assert_matches_data(samples: np.ndarray, variance_floor: float) -> None:
    assert abs(samples.mean() - MU) < 0.015, samples.mean()
    ratio = samples.var() / S**2
    assert variance_floor <= ratio <= 1.04, ratio


class Case(NamedTuple):
    name: str
    steps: int
    eta: float
    beta: str
    prediction: str
    variance_floor: float  # what this step count may lose to discretisation


CASES = [
    Case("ddpm", 1000, 0.0, "linear", "epsilon", 0.96),
    Case("ddpm", 100, 0.0, "cosine", "v_prediction", 0.89),
    Case("ddim", 1000, 0.0, "linear", "epsilon", 0.96),
    Case("ddim", 50, 0.0, "linear", "v_prediction", 0.85),
    Case("ddim", 50, 1.0, "cosine", "epsilon", 0.83),
    # First-order steps would lose 27% (10 steps) and 15% (20 steps) here.
    Case("dpmpp_2m", 10, 0.0, "cosine", "epsilon", 0.86),
    Case("dpmpp_2m", 20, 0.0, "cosine", "v_prediction", 0.95),
    Case("dpmpp_2m", 50, 0.0, "linear", "epsilon", 0.96),
    Case("euler_a", 1000, 0.0, "cosine", "epsilon", 0.96),
    Case("euler_a", 30, 0.0, "linear", "v_prediction", 0.66),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.name}-{c.steps}-eta{c.eta}-{c.beta}")
def test_sampler_reproduces_the_data_distribution(case: Case) -> None:
    samples = sample(
        make_sampler(case.name, case.eta), schedule_for(case.beta, case.prediction), case.steps
    )
    assert samples.shape == (ITEMS, *SHAPE) and samples.dtype == np.float32
    assert_matches_data(samples, case.variance_floor)


def test_every_registered_sampler_has_a_contract_case() -> None:
    assert {case.name for case in CASES} == set(SAMPLERS)


def test_the_contract_catches_a_sampler_that_drops_its_noise() -> None:
    @dataclasses.dataclass(frozen=True)
    class NoiselessDDPM(DDPMSampler):
        def update(
            self,
            schedule: NoiseSchedule,
            state: SamplerState,
            x0: np.ndarray,
            eps: np.ndarray,
            noise: np.ndarray | None,
        ) -> np.ndarray:
            return super().update(schedule, state, x0, eps, np.zeros_like(x0))

    with pytest.raises(AssertionError):
        assert_matches_data(sample(NoiselessDDPM(), schedule_for(), 100), 0.89)


@pytest.mark.parametrize("steps", [1, 7, 25])
def test_ancestral_samplers_draw_the_same_posterior(steps: int) -> None:
    """DDPM, DDIM at eta 1 and Euler ancestral (converted to VP) are one update, derived
    three ways; with the same noise they must agree."""
    schedule = schedule_for("cosine")
    runs = [
        sample(make_sampler(name, eta), schedule, steps)
        for name, eta in [("ddpm", 0.0), ("ddim", 1.0), ("euler_a", 0.0)]
    ]
    for other in runs[1:]:
        np.testing.assert_allclose(other, runs[0], rtol=1e-4, atol=1e-4)


def test_dpmpp_2m_first_step_is_deterministic_ddim() -> None:
    schedule = schedule_for()
    jobs = [Job(make_sampler(name), schedule, 10, 3, 4) for name in ("dpmpp_2m", "ddim")]
    for job in jobs:
        job.advance(denoiser(schedule, *job.model_input()))
    np.testing.assert_allclose(jobs[0].state.x, jobs[1].state.x, rtol=1e-6, atol=1e-6)


def test_jobs_share_one_denoiser_call_per_iteration() -> None:
    """Jobs with different samplers, step counts and sizes, batched row-wise, give exactly
    what each gives alone."""
    specs = [
        ("ddpm", 0.0, 20, 2),
        ("ddim", 0.5, 7, 3),
        ("dpmpp_2m", 0.0, 10, 1),
        ("euler_a", 0.0, 15, 4),
    ]
    schedule = schedule_for("cosine", "v_prediction")

    def jobs() -> list[Job]:
        return [
            Job(make_sampler(name, eta), schedule, steps, seed, n)
            for seed, (name, eta, steps, n) in enumerate(specs)
        ]

    alone = []
    for job in jobs():
        while not job.state.done:
            job.advance(denoiser(schedule, *job.model_input()))
        alone.append(result(job.state))

    together, mixed_timesteps = jobs(), False
    while active := [job for job in together if not job.state.done]:
        inputs = [job.model_input() for job in active]
        x, t = np.concatenate([x for x, _ in inputs]), np.concatenate([t for _, t in inputs])
        mixed_timesteps |= len(set(t.tolist())) > 1
        rows = np.cumsum([len(x) for x, _ in inputs])[:-1]
        for job, output in zip(active, np.split(denoiser(schedule, x, t), rows), strict=True):
            job.advance(output)
    assert mixed_timesteps
    for job, expected in zip(together, alone, strict=True):
        np.testing.assert_array_equal(result(job.state), expected)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_stepping_leaves_the_previous_state_untouched(name: str) -> None:
    schedule, sampler = schedule_for(), make_sampler(name)
    job = Job(sampler, schedule, 5, 0, 2)
    for _ in range(3):  # past dpmpp_2m's first, history-free step
        before, x_copy = job.state, job.state.x.copy()
        job.advance(denoiser(schedule, *job.model_input()))
        assert job.state is not before and job.state.index == before.index + 1
        np.testing.assert_array_equal(before.x, x_copy)
    state = job.state
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.index = 0
    for array in (state.x, state.timesteps, state.denoised, *state.history):
        with pytest.raises(ValueError, match="read-only"):
            array[...] = 0


def test_state_progress_and_result() -> None:
    schedule, sampler = schedule_for(), make_sampler("ddim")
    job = Job(sampler, schedule, 3, 0, 2)
    assert job.state.denoised is None and not job.state.done
    x, t = job.model_input()
    assert x.dtype == t.dtype == np.float32 and t.shape == (2,) and t.tolist() == [999.0, 999.0]
    with pytest.raises(ValueError, match="not done"):
        result(job.state)
    while not job.state.done:
        job.advance(denoiser(schedule, *job.model_input()))
    assert job.state.index == job.state.steps == 3
    np.testing.assert_array_equal(result(job.state), job.state.denoised)
    with pytest.raises(ValueError, match="done"):
        job.advance(np.zeros_like(job.state.x))


@pytest.mark.parametrize(
    ("name", "eta", "needs"),
    [
        ("ddpm", 0.0, True),
        ("ddim", 0.0, False),
        ("ddim", 0.3, True),
        ("dpmpp_2m", 0.0, False),
        ("euler_a", 0.0, True),
    ],
)
def test_needs_noise_is_what_step_demands(name: str, eta: float, needs: bool) -> None:
    schedule, sampler = schedule_for(), make_sampler(name, eta)
    assert sampler.needs_noise() is needs
    state = sampler.start(schedule, 4, np.zeros((2, *SHAPE)))
    output = np.zeros_like(state.x)
    with pytest.raises(ValueError, match="noise"):
        sampler.step(schedule, state, output, None if needs else np.zeros_like(state.x))


def test_unknown_sampler_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown sampler 'plms'.*ddim.*ddpm.*dpmpp_2m.*euler_a"):
        make_sampler("plms")


@pytest.mark.parametrize(
    ("name", "eta"),
    [("ddpm", 0.5), ("dpmpp_2m", 1.0), ("euler_a", 0.1), ("ddim", -0.1), ("ddim", 1.5)],
)
def test_bad_eta_is_refused(name: str, eta: float) -> None:
    with pytest.raises(ValueError, match="eta"):
        make_sampler(name, eta)


def test_samplers_are_frozen_values() -> None:
    assert make_sampler("ddim", 0.5) == make_sampler("ddim", 0.5) != make_sampler("ddim", 0.2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_sampler("ddim").eta = 1.0


@pytest.mark.parametrize("steps", [1, 3, 10, 333, T])
def test_timesteps_trail_from_the_last_trained_step(steps: int) -> None:
    plan = schedule_for().timesteps(steps)
    assert len(plan) == steps and plan[0] == T - 1 and plan.dtype == np.int64
    gaps = -np.diff(np.append(plan, -1))  # the last gap is the final jump to clean data
    assert np.all(np.abs(gaps - T / steps) <= 1)


@pytest.mark.parametrize("steps", [0, T + 1])
def test_timesteps_refuse_impossible_step_counts(steps: int) -> None:
    with pytest.raises(ValueError, match="steps"):
        schedule_for().timesteps(steps)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_x0_and_eps_invert_the_forward_process(prediction: str) -> None:
    rng = np.random.default_rng(0)
    x0, eps = rng.normal(0, 2, (3, *SHAPE)), rng.standard_normal((3, *SHAPE))
    t = np.array([0, 500, 999])
    ab = schedule_for().alphas_cumprod[t].reshape(-1, 1, 1, 1)
    x_t = np.sqrt(ab) * x0 + np.sqrt(1 - ab) * eps
    output = eps if prediction == "epsilon" else np.sqrt(ab) * eps - np.sqrt(1 - ab) * x0

    got_x0, got_eps = schedule_for(prediction=prediction).x0_and_eps(x_t, t, output)
    np.testing.assert_allclose(got_x0, x0, atol=1e-6)
    np.testing.assert_allclose(got_eps, eps, atol=1e-6)

    clipped = schedule_for(prediction=prediction, clip_range=(-1.0, 1.0))
    got_x0, got_eps = clipped.x0_and_eps(x_t, t, output)
    np.testing.assert_array_equal(got_x0, np.clip(got_x0, -1, 1))
    assert np.any(got_x0 != x0)  # clipping did something, and eps still explains x_t
    np.testing.assert_allclose(np.sqrt(ab) * got_x0 + np.sqrt(1 - ab) * got_eps, x_t, atol=1e-9)


def test_state_rejects_mismatched_model_output() -> None:
    schedule, sampler = schedule_for(), make_sampler("ddim")
    state: SamplerState = sampler.start(schedule, 4, np.zeros((2, *SHAPE)))
    with pytest.raises(ValueError, match="model output"):
        sampler.step(schedule, state, np.zeros((3, *SHAPE)))
