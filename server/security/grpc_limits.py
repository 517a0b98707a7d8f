"""A cap on the gRPC calls the generative service handles at once, answered like REST's 429.

gRPC core keeps the calls that arrived but that the (single-threaded) asyncio server has
not yet picked up in a backlog, and past ``grpc.server.max_pending_requests`` (1000 by
default) it drops them at random with CANCELLED: the client learns nothing useful and no
handler ever counts them. So the core may hold ``grpc_max_pending_calls`` (a backlog the
server works through quickly, since refusing is cheap), and this interceptor refuses calls
past ``max_grpc_concurrent_rpcs`` itself with RESOURCE_EXHAUSTED, ``retry-after`` metadata
and a count in the request metrics.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from latentserve.server.errors import Overloaded
from latentserve.server.security.grpc_guard import method_name

# How a refusal reaches the client and the metrics: (context, method, model, error).
Refuse = Callable[[grpc.aio.ServicerContext, str, str, Overloaded], Awaitable[None]]


def core_backlog_options(max_pending: int) -> list[tuple[str, int]]:
    """Channel options that let gRPC core hold ``max_pending`` calls not yet picked up
    before it starts dropping them (at random, up to twice that, then all)."""
    return [
        ("grpc.server.max_pending_requests", max_pending),
        ("grpc.server.max_pending_requests_hard_limit", 2 * max_pending),
    ]


class ConcurrencyLimit(grpc.aio.ServerInterceptor):
    """At most ``limit`` calls of ``service`` in their handlers; the rest are refused."""

    def __init__(self, service: str, limit: int, refuse: Refuse) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self._prefix = f"/{service}/"
        self._limit = limit
        self._refuse = refuse
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
        if handler is None or not details.method.startswith(self._prefix):
            return handler  # health checks and reflection stay answerable under overload
        method = method_name(details.method)
        if handler.unary_unary is not None:
            wrapped = grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        elif handler.unary_stream is not None:
            wrapped = grpc.unary_stream_rpc_method_handler(
                self._stream(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        else:
            return handler
        self._wrapped[details.method] = wrapped
        return wrapped

    def _full(self) -> Overloaded | None:
        if self._active < self._limit:
            self._active += 1
            return None
        return Overloaded(f"{self._limit} calls are in progress, retry later")

    def _unary(self, behaviour: Callable, method: str) -> Callable:
        async def limited(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if (refusal := self._full()) is not None:
                await self._refuse(context, method, getattr(request, "model", ""), refusal)
                return None
            try:
                return await behaviour(request, context)
            finally:
                self._active -= 1

        return limited

    def _stream(self, behaviour: Callable, method: str) -> Callable:
        async def limited(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator:
            if (refusal := self._full()) is not None:
                await self._refuse(context, method, getattr(request, "model", ""), refusal)
                return
            try:
                async for response in behaviour(request, context):
                    yield response
            finally:
                self._active -= 1

        return limited
