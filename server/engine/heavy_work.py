"""A bound on requests whose work grows with what the client asks for (log-prob samples).

Such a request computes in many graph calls; letting any number of them run at once lets a
few clients hold the whole machine's memory. ``HeavyWorkLimit`` lets ``capacity`` of them
compute at a time and ``max_waiting`` more wait their turn; the next one is refused with
``Overloaded`` (429 / RESOURCE_EXHAUSTED) instead of queueing without end. When the last
one finishes the allocator is asked to give its freed memory back to the system.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from latentserve.server.errors import Overloaded

log = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> ctypes._CFuncPtr | None:
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Hand the C heap's free pages back to the system (glibc ``malloc_trim``).

    Large graph runs leave their freed buffers in glibc's heap, where they count towards
    the process's resident memory until something reuses them; trimming returns them.
    Returns whether anything could be trimmed on this platform.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


class HeavyWorkLimit:
    def __init__(self, capacity: int, max_waiting: int, what: str) -> None:
        if capacity < 1 or max_waiting < 0:
            raise ValueError(
                f"need capacity >= 1 and max_waiting >= 0, got {capacity}, {max_waiting}"
            )
        self._slots = asyncio.Semaphore(capacity)
        self._capacity = capacity
        self._max_waiting = max_waiting
        self._what = what
        self._waiting = 0
        self._running = 0
        self._trimming: asyncio.Task[bool] | None = None

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the slots while the block runs; refuse when too many already wait."""
        if self._slots.locked() and self._waiting >= self._max_waiting:
            raise Overloaded(
                f"{self._capacity} {self._what} requests are computing and {self._waiting} "
                "wait; retry later"
            )
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        self._running += 1
        try:
            yield
        finally:
            self._running -= 1
            self._slots.release()
            if self._running == 0 and self._waiting == 0:
                self._trim()

    def _trim(self) -> None:
        if self._trimming is None or self._trimming.done():
            # Off the event loop: trimming a large heap walks it.
            self._trimming = asyncio.ensure_future(asyncio.to_thread(release_free_memory))
