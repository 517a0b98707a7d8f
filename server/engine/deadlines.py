"""Client deadlines: the moment after which nobody waits for a request's answer.

A gRPC call's deadline or REST's ``X-Request-Timeout`` header gives the request one. It is
kept in a context variable, so it follows the request into the job and the batcher queues
it reaches without being passed along. Queues drop work whose deadline passed before it
computes, and the server's own time limits end at the client's deadline when that comes
first, answering ``DeadlineExceeded`` (504 / DEADLINE_EXCEEDED).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar

from latentserve.server.errors import (
    DeadlineExceeded,
    InvalidArgument,
    ServingError,
    Unavailable,
    shown,
)

#: The REST header: seconds (a decimal number) the client waits for the answer.
TIMEOUT_HEADER = "X-Request-Timeout"
#: The longest timeout a header may ask for (a day): longer ones are client mistakes.
MAX_TIMEOUT_S = 86400.0

# The loop time by which the current request must be answered; None: no client deadline.
_DEADLINE: ContextVar[float | None] = ContextVar("latentserve_deadline", default=None)


def begin(timeout_s: float | None) -> None:
    """Give the current request (its own task) a deadline ``timeout_s`` seconds from now."""
    if timeout_s is not None:
        _DEADLINE.set(asyncio.get_running_loop().time() + timeout_s)


def detach() -> None:
    """The current task works for many requests at once (a shared step loop, a prompt
    encoding others wait on): no one client's deadline applies to it."""
    _DEADLINE.set(None)


def current() -> float | None:
    return _DEADLINE.get()


def passed(deadline: float | None, now: float) -> bool:
    return deadline is not None and now >= deadline


def drop_reason(future: asyncio.Future, deadline: float | None, now: float) -> str | None:
    """Why queued work leaves its queue uncomputed (``deadline``, ``cancelled``, ``failed``:
    an earlier part of it failed), or None to keep it. Work whose deadline passed is
    answered with ``DeadlineExceeded`` here."""
    if passed(deadline, now):
        if not future.done():
            future.set_exception(DeadlineExceeded("the deadline passed while it was queued"))
        return "deadline"
    if future.cancelled():
        return "cancelled"
    return "failed" if future.done() else None


def parse_timeout(text: str) -> float:
    """The seconds of an ``X-Request-Timeout`` header, or ``InvalidArgument`` naming it."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_TIMEOUT_S):
        raise InvalidArgument(
            TIMEOUT_HEADER, f"must be seconds > 0 and <= {MAX_TIMEOUT_S:g}, got {shown(text)!r}"
        )
    return seconds


def ending(limit_s: float, what: str) -> tuple[float, Callable[[], ServingError]]:
    """When work limited to ``limit_s`` (the server's limit) must end — at the client's
    deadline if that comes first — as a loop time, and the error that says which one
    ended it (made only if one does)."""
    own = asyncio.get_running_loop().time() + limit_s
    client = current()
    if client is not None and client <= own:
        return client, lambda: DeadlineExceeded(
            f"{what} did not finish before the client's deadline"
        )
    return own, lambda: Unavailable(f"{what} timed out after {limit_s:g}s")


@asynccontextmanager
async def within(limit_s: float, what: str) -> AsyncIterator[None]:
    """Run the block for at most ``limit_s`` (the server's limit) or up to the client's
    deadline, whichever ends first; say which one ended it."""
    at, why = ending(limit_s, what)
    try:
        async with asyncio.timeout_at(at):
            yield
    except TimeoutError:
        raise why() from None
