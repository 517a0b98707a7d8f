"""Many requests over one streaming call, answered as each is done.

A unary call per request costs gRPC its per-call work (stream setup, headers, trailers,
interceptors) every time, which on a busy event loop is most of what a cheap request
costs; a stream of requests pays it once. ``answer_as_done`` reads a call's requests,
works on up to ``limit`` of them concurrently and yields each answer when it is ready.
A slot is freed only once its answer has been handed on, so a client that stops reading
holds at most ``limit`` answers in the server, and the server stops reading its requests
(gRPC flow control then stops the client) until it reads again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import TypeVar

Request = TypeVar("Request")
Answer = TypeVar("Answer")

_END = object()  # the reader's last item: no more requests will come


async def answer_as_done(
    requests: AsyncIterable[Request],
    answer: Callable[[Request], Awaitable[Answer]],
    limit: int,
) -> AsyncIterator[Answer]:
    """Yield ``answer(r)`` for every request ``r``, in the order they finish.

    ``answer`` should turn a request's own failures into an answer; an exception it raises
    ends the whole call (after cancelling the other requests), as does one from reading.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    slots = asyncio.Semaphore(limit)
    ready: asyncio.Queue[object] = asyncio.Queue()
    working: set[asyncio.Task[None]] = set()
    unanswered = 0  # requests read whose answers have not been yielded yet

    async def work(request: Request) -> None:
        try:
            await ready.put(await answer(request))
        except BaseException as exc:  # handed to the writer, which re-raises it
            await ready.put(_Failed(exc))
            raise

    async def read() -> None:
        nonlocal unanswered
        pending = aiter(requests)
        try:
            while True:
                await slots.acquire()  # before reading: a full call reads nothing more
                try:
                    request = await anext(pending)
                except StopAsyncIteration:
                    break
                unanswered += 1
                task = asyncio.create_task(work(request))
                working.add(task)
                task.add_done_callback(working.discard)
        except BaseException as exc:
            await ready.put(_Failed(exc))
            raise
        await ready.put(_END)

    reader = asyncio.create_task(read())
    reading = True
    try:
        while reading or unanswered:
            item = await ready.get()
            if item is _END:
                reading = False
                continue
            if isinstance(item, _Failed):
                raise item.exc
            unanswered -= 1
            yield item  # type: ignore[misc]
            slots.release()
    finally:
        for task in (reader, *working):
            task.cancel()
        await asyncio.gather(reader, *working, return_exceptions=True)


class _Failed:
    """An exception raised while reading or answering, on its way to the writer."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
