"""Traces for gRPC calls: each call of a traced server continues its caller's trace.

The caller's W3C ``traceparent`` (and ``tracestate``) metadata becomes the parent of a
server span per call, current while the handler runs, so the service's request span and
everything under it join the caller's trace. Installed only while tracing is on
(``latentserve.server.tracing``); outermost, so refused calls are traced too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from latentserve.server import tracing
from latentserve.server.security.grpc_limits import rewrap


class TraceContext(grpc.aio.ServerInterceptor):
    # Not cached per method: the interceptors inside this one must see every call.
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        return rewrap(handler, self._unary, self._stream, details.method)

    @staticmethod
    def _span(method: str, context: grpc.aio.ServicerContext) -> Any:
        service, _, rpc = method.lstrip("/").partition("/")
        # binary metadata (``-bin`` keys) carries no trace context
        carrier = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc}
        return tracing.server_span(method.lstrip("/"), carrier, attributes)

    def _unary(self, behaviour: Callable, method: str) -> Callable:
        async def traced(request: Any, context: grpc.aio.ServicerContext) -> Any:
            with self._span(method, context):
                return await behaviour(request, context)

        return traced

    def _stream(self, behaviour: Callable, method: str) -> Callable:
        async def traced(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator:
            with self._span(method, context):
                async for response in behaviour(request, context):
                    yield response

        return traced
