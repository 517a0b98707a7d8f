"""A cap on the gRPC calls the generative service handles at once, answered like REST's 429.

gRPC core keeps the calls that arrived but that the (single-threaded) asyncio server has
not yet picked up in a backlog, and past ``grpc.server.max_pending_requests`` (1000 by
default) it drops them at random with CANCELLED: the client learns nothing useful and no
handler ever counts them. So the core may hold ``grpc_max_pending_calls`` (a backlog the
server works through quickly, since refusing is cheap), and this interceptor refuses calls
past ``max_grpc_concurrent_rpcs`` itself with RESOURCE_EXHAUSTED, ``retry-after`` metadata
and a count in the request metrics. Every service that serves models counts against the
one cap, so a client cannot get past it by calling another protocol. While the server
drains, ``DrainGate`` holds new calls and refuses them with UNAVAILABLE once they can no
longer be cancelled by core.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import grpc
from latentserve.server.errors import Overloaded
from latentserve.server.security.grpc_guard import method_name

# How a refusal reaches the client and the metrics: (context, method, request, error); each
# service has its own, since each knows where its requests name their model.
Refuse = Callable[[grpc.aio.ServicerContext, str, Any, Overloaded], Awaitable[None]]


def core_backlog_options(max_pending: int) -> list[tuple[str, int]]:
    """Channel options that let gRPC core hold ``max_pending`` calls not yet picked up
    before it starts dropping them (at random, up to twice that, then all)."""
    return [
        ("grpc.server.max_pending_requests", max_pending),
        ("grpc.server.max_pending_requests_hard_limit", 2 * max_pending),
    ]


def rewrap(
    handler: grpc.RpcMethodHandler, unary: Callable, stream: Callable, method: str
) -> grpc.RpcMethodHandler:
    """``handler`` with its behaviour wrapped by ``unary`` or ``stream`` (``(behaviour,
    method) -> behaviour``; a bidirectional call's behaviour, which takes the request
    iterator where the others take the request, is wrapped by ``stream`` too). Handlers
    of client-streaming calls, which this service has none of, are returned as they are."""
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            unary(handler.unary_unary, method),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            stream(handler.unary_stream, method),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            stream(handler.stream_stream, method),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler


class ConcurrencyLimit(grpc.aio.ServerInterceptor):
    """At most ``limit`` calls of the ``services`` together in their handlers; the rest are
    refused, each by its service's ``Refuse``. Methods in ``unlimited`` (full paths, e.g.
    liveness probes) are never refused."""

    def __init__(
        self, services: Mapping[str, Refuse], limit: int, unlimited: Iterable[str] = ()
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self._refusals = {f"/{service}/": refuse for service, refuse in services.items()}
        self._unlimited = frozenset(unlimited)
        self._limit = limit
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}
        self._active = 0

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        # A method's handler never changes: wrap it once, not on every call.
        if (wrapped := self._wrapped.get(details.method)) is not None:
            return wrapped
        handler = await continuation(details)
        service = details.method[: details.method.rfind("/") + 1]
        refuse = self._refusals.get(service)
        if handler is None or refuse is None or details.method in self._unlimited:
            return handler  # health checks and reflection stay answerable under overload
        unary = functools.partial(self._unary, refuse)
        stream = functools.partial(self._stream, refuse)
        wrapped = rewrap(handler, unary, stream, method_name(details.method))
        if wrapped is not handler:
            self._wrapped[details.method] = wrapped
        return wrapped

    def _full(self) -> Overloaded | None:
        if self._active < self._limit:
            self._active += 1
            return None
        return Overloaded(f"{self._limit} calls are in progress, retry later")

    def _unary(self, refuse: Refuse, behaviour: Callable, method: str) -> Callable:
        async def limited(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if (refusal := self._full()) is not None:
                await refuse(context, method, request, refusal)
                return None
            try:
                return await behaviour(request, context)
            finally:
                self._active -= 1

        return limited

    def _stream(self, refuse: Refuse, behaviour: Callable, method: str) -> Callable:
        async def limited(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator:
            if (refusal := self._full()) is not None:
                await refuse(context, method, request, refusal)
                return
            try:
                async for response in behaviour(request, context):
                    yield response
            finally:
                self._active -= 1

        return limited


class DrainGate(grpc.aio.ServerInterceptor):
    """Calls that arrive once the server drains wait here, and are refused
    with UNAVAILABLE (retry elsewhere) only after gRPC core has begun to shut down.

    Core cancels (CANCELLED, not UNAVAILABLE) every call it holds but the server has not
    yet picked up at the moment it shuts down. Refusing new calls at once would not help:
    a client that is refused sends its next call straight away, so some call is always in
    that backlog. Held here instead, each client waits on its own call, the backlog
    empties (``quiet``), and core shuts down with nothing in it; the held calls are then
    answered (``release``) while core lets started calls finish."""

    def __init__(self, answered: tuple[str, ...]) -> None:
        """``answered``: services whose calls are still answered (health, reflection)."""
        self._answered = tuple(f"/{service}/" for service in answered)
        self._draining = False
        self._released: asyncio.Event | None = None
        self._last_arrival = 0.0

    def start(self) -> None:
        """From now on new calls are held; those in progress go on."""
        self._draining = True
        self._released = asyncio.Event()
        self._last_arrival = asyncio.get_running_loop().time()

    async def quiet(self, period_s: float, at_most_s: float) -> None:
        """Return once no call has arrived for ``period_s`` (or after ``at_most_s``)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + at_most_s
        while (wait := self._last_arrival + period_s - loop.time()) > 0 and loop.time() < give_up:
            await asyncio.sleep(min(wait, give_up - loop.time()))

    def release(self) -> None:
        """Refuse the held calls (call once core's shutdown has begun)."""
        if self._released is not None:
            self._released.set()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if not self._draining or handler is None or details.method.startswith(self._answered):
            return handler
        return rewrap(handler, self._held, self._held_stream, method_name(details.method))

    async def _refuse_when_released(self, context: grpc.aio.ServicerContext) -> None:
        assert self._released is not None
        self._last_arrival = asyncio.get_running_loop().time()
        await self._released.wait()
        await context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")

    def _held(self, behaviour: Callable, method: str) -> Callable:
        async def held(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await self._refuse_when_released(context)

        return held

    def _held_stream(self, behaviour: Callable, method: str) -> Callable:
        async def held(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator:
            await self._refuse_when_released(context)
            yield  # never reached: makes this an async generator like the behaviour

        return held
