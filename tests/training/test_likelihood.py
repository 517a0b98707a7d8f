"""The discretized logistic is a proper distribution over the 256 pixel levels."""

from __future__ import annotations

import math

import pytest
import torch
from latentserve.training.likelihood import (
    discretized_logistic_log_prob,
    nats_to_bits_per_dim,
)

LEVELS = torch.arange(256, dtype=torch.uint8)


@pytest.mark.parametrize(
    ("loc", "log_scale"),
    [(0.5, -2.0), (0.0, -7.0), (1.0, -7.0), (-0.4, -1.0), (1.3, 0.5), (0.37, -6.5), (0.5, 4.0)],
)
def test_masses_sum_to_one(loc: float, log_scale: float) -> None:
    log_p = discretized_logistic_log_prob(
        LEVELS, torch.full((256,), loc), torch.full((256,), log_scale)
    )
    assert torch.isfinite(log_p).all()
    assert (log_p <= 0).all()
    assert log_p.double().exp().sum().item() == pytest.approx(1.0, abs=1e-5)


def test_edge_levels_take_the_tails() -> None:
    # A location far below 0 puts almost all mass on level 0, far above 1 on level 255.
    low = discretized_logistic_log_prob(LEVELS, torch.full((256,), -3.0), torch.full((256,), -3.0))
    high = discretized_logistic_log_prob(LEVELS, torch.full((256,), 4.0), torch.full((256,), -3.0))
    assert low[0].exp().item() == pytest.approx(1.0, abs=1e-6)
    assert high[255].exp().item() == pytest.approx(1.0, abs=1e-6)


def test_sharp_logistic_puts_mass_on_its_level() -> None:
    log_p = discretized_logistic_log_prob(
        LEVELS, torch.full((256,), 100 / 255), torch.full((256,), -7.0)
    )
    assert log_p.argmax().item() == 100
    half_bin = 0.5 / 255 / math.exp(-7.0)  # in units of the logistic's scale
    expected = 2.0 / (1.0 + math.exp(-half_bin)) - 1.0
    assert log_p[100].exp().item() == pytest.approx(expected, rel=1e-4)


def test_gradients_are_finite_in_the_tails() -> None:
    loc = torch.tensor([-5.0, 0.5, 6.0], requires_grad=True)
    log_scale = torch.tensor([-7.0, -7.0, -7.0], requires_grad=True)
    x = torch.tensor([128, 0, 255], dtype=torch.uint8)
    discretized_logistic_log_prob(x, loc, log_scale).sum().backward()
    assert torch.isfinite(loc.grad).all() and torch.isfinite(log_scale.grad).all()


def test_bits_per_dim_unit() -> None:
    assert nats_to_bits_per_dim(784 * math.log(2.0), 784) == pytest.approx(1.0)
