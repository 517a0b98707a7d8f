"""The SDK's retry policy: which refusals it retries, how long it waits, and its bounds."""

from __future__ import annotations

import asyncio
import json

import pytest
from latentserve.clients.errors import (
    DeadlineExceededError,
    InvalidArgumentError,
    OverloadedError,
    UnavailableError,
)
from latentserve.clients.grpc_client import channel_options
from latentserve.clients.retry import NO_RETRY, Retry


def test_waits_what_the_server_asked_for_within_the_bound() -> None:
    retry = Retry(attempts=3, backoff_s=0.25, max_wait_s=5.0)
    assert retry.wait_s(OverloadedError("busy", retry_after_s=2), 0) == 2
    assert retry.wait_s(OverloadedError("busy", retry_after_s=60), 0) == 5.0
    # Nothing named: exponential backoff.
    assert retry.wait_s(UnavailableError("down"), 0) == 0.25
    assert retry.wait_s(UnavailableError("down"), 1) == 0.5
    assert retry.wait_s(UnavailableError("down"), 2) is None  # the third try was the last


def test_only_refusals_are_retried() -> None:
    retry = Retry(attempts=5)
    assert retry.wait_s(DeadlineExceededError("too late"), 0) is None
    assert retry.wait_s(InvalidArgumentError("bad n", field="n"), 0) is None
    assert NO_RETRY.wait_s(OverloadedError("busy", retry_after_s=1), 0) is None


def test_call_retries_then_returns_and_gives_up_at_the_bound() -> None:
    waits: list[float] = []
    outcomes = iter([OverloadedError("busy", retry_after_s=1), UnavailableError("down"), "ok"])

    def attempt() -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert Retry(attempts=3).call(attempt, sleep=waits.append) == "ok"
    assert waits == [1, 0.5]

    tries = []

    def always_busy() -> None:
        tries.append(1)
        raise OverloadedError("busy", retry_after_s=1)

    with pytest.raises(OverloadedError):
        Retry(attempts=2).call(always_busy, sleep=waits.append)
    assert len(tries) == 2


def test_call_async_retries_like_call() -> None:
    waits: list[float] = []
    outcomes = iter([UnavailableError("down"), "ok"])

    async def attempt() -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    assert asyncio.run(Retry().call_async(attempt, sleep=sleep)) == "ok"
    assert waits == [0.25]


def test_grpc_channels_get_the_same_bounds_as_a_service_config() -> None:
    options = dict(channel_options(Retry(attempts=9, backoff_s=0.5, max_wait_s=3)))
    assert options["grpc.enable_retries"] == 1
    policy = json.loads(options["grpc.service_config"])["methodConfig"][0]["retryPolicy"]
    assert policy["maxAttempts"] == 5  # gRPC's own cap
    assert policy["initialBackoff"] == "0.5s" and policy["maxBackoff"] == "3s"
    assert set(policy["retryableStatusCodes"]) == {"UNAVAILABLE", "RESOURCE_EXHAUSTED"}
    off = dict(channel_options(NO_RETRY))
    assert off["grpc.enable_retries"] == 0 and "grpc.service_config" not in off


@pytest.mark.parametrize("bad", [{"attempts": 0}, {"backoff_s": 0}, {"max_wait_s": -1}])
def test_a_policy_that_makes_no_sense_is_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        Retry(**bad)
