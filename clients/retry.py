"""Retrying calls the server refused for now (``overloaded``, ``unavailable``).

A server answers 429 / RESOURCE_EXHAUSTED when its queue is full and 503 / UNAVAILABLE
while it loads or shuts down, naming how long to wait (``Retry-After``; gRPC's standard
``grpc-retry-pushback-ms`` trailer). One :class:`Retry` says how a client reacts: the REST
client runs its loop here, and the gRPC client hands the same bounds to gRPC's own retry
support as the channel's service config, which honours the server's pushback itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from latentserve.clients.errors import (
    DeadlineExceededError,
    LatentServeError,
    OverloadedError,
    UnavailableError,
)

T = TypeVar("T")
# gRPC caps a retry policy's attempts at 5, whatever it is given.
GRPC_MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Retry:
    """``attempts`` tries in all (1: never retry). Between them the client waits what the
    server asked for, else ``backoff_s`` doubling each time, and never more than
    ``max_wait_s`` at once. Only refusals are retried — a full queue, a server not
    ready or shutting down, a connection that could not be made — never a deadline that
    passed or an error in the request."""

    attempts: int = 3
    backoff_s: float = 0.25
    max_wait_s: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if self.backoff_s <= 0 or self.max_wait_s <= 0:
            raise ValueError("backoff_s and max_wait_s must be positive")

    def wait_s(self, error: LatentServeError, attempt: int) -> float | None:
        """How long to wait before trying again after ``error`` on try ``attempt`` (from
        0); ``None``: raise it."""
        if attempt + 1 >= self.attempts or isinstance(error, DeadlineExceededError):
            return None
        if not isinstance(error, OverloadedError | UnavailableError):
            return None
        asked = error.retry_after_s
        return min(asked if asked is not None else self.backoff_s * 2**attempt, self.max_wait_s)

    def call(self, attempt: Callable[[], T], sleep: Callable[[float], object] = time.sleep) -> T:
        """``attempt()``'s result, trying again after refusals as this policy says."""
        tries = 0
        while True:
            try:
                return attempt()
            except LatentServeError as error:
                wait = self.wait_s(error, tries)
                if wait is None:
                    raise
            sleep(wait)
            tries += 1

    async def call_async(
        self,
        attempt: Callable[[], Awaitable[T]],
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> T:
        """:meth:`call` for coroutines."""
        tries = 0
        while True:
            try:
                return await attempt()
            except LatentServeError as error:
                wait = self.wait_s(error, tries)
                if wait is None:
                    raise
            await sleep(wait)
            tries += 1

    def grpc_service_config(self, service: str) -> str | None:
        """The channel's service config: gRPC retries ``service``'s calls answered
        UNAVAILABLE or RESOURCE_EXHAUSTED, honouring the server's pushback (``None``: no
        retries)."""
        attempts = min(self.attempts, GRPC_MAX_ATTEMPTS)
        if attempts < 2:
            return None
        policy = {
            "maxAttempts": attempts,
            "initialBackoff": f"{self.backoff_s:g}s",
            "maxBackoff": f"{self.max_wait_s:g}s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
        }
        return json.dumps(
            {"methodConfig": [{"name": [{"service": service}], "retryPolicy": policy}]}
        )


DEFAULT_RETRY = Retry()
NO_RETRY = Retry(attempts=1)
