"""Every gRPC call ends with a documented status, whatever the client sent.

grpc.aio decodes a request before any servicer code runs: bytes that are not the expected
message, or an exception no handler mapped, reach the client as UNKNOWN carrying the
exception's text, and the server logs an error. This interceptor wraps each handler of a
unary request or of a bidirectional call so that an undecodable request (or one message
of the call's stream) is a counted INVALID_ARGUMENT naming ``request`` (a client's
mistake, not logged as a server error), and an unexpected exception is INTERNAL with a
fixed message (its traceback stays in the server's log).
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal server error"


class _Undecodable:
    """Handed to a guarded handler instead of a request whose bytes did not decode."""


UNDECODABLE = _Undecodable()


def method_name(full_method: str) -> str:
    """``/latentserve.v1.GenerativeService/StreamSample`` -> ``stream_sample``."""
    rpc = full_method.rsplit("/", 1)[-1]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", rpc).lower()


class CallGuard(grpc.aio.ServerInterceptor):
    """``on_undecodable(method)`` is told of each request refused as undecodable."""

    def __init__(self, on_undecodable: Callable[[str], None]) -> None:
        self._on_undecodable = on_undecodable
        self._guarded: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or (handler.request_streaming and not handler.response_streaming):
            return handler  # client-streaming calls: this service has none
        cached = self._guarded.get(details.method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        guarded = self._guard(handler, method_name(details.method))
        self._guarded[details.method] = (handler, guarded)
        return guarded

    def _guard(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        kind = _kind(handler)
        behaviour = getattr(handler, kind)
        deserialize = handler.request_deserializer

        def read(data: bytes) -> Any:
            try:
                return deserialize(data) if deserialize is not None else data
            except Exception:  # protobuf's DecodeError, or any other parse failure
                return UNDECODABLE

        async def refuse(context: grpc.aio.ServicerContext) -> None:
            self._on_undecodable(method)
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "request: not a valid protobuf message for this method",
                trailing_metadata=(("field", "request"),),
            )

        async def fail(context: grpc.aio.ServicerContext) -> None:
            log.exception("grpc %s failed", method)
            await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)

        if kind == "stream_stream" and inspect.isasyncgenfunction(behaviour):

            async def call(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator:
                async def decoded() -> AsyncIterator[Any]:
                    async for request in requests:
                        if request is UNDECODABLE:
                            raise _UndecodableRequest
                        yield request

                try:
                    async for response in behaviour(decoded(), context):
                        yield response
                except _UndecodableRequest:
                    await refuse(context)
                except grpc.aio.AbortError:
                    raise
                except Exception:
                    await fail(context)

        elif inspect.iscoroutinefunction(behaviour):

            async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
                if request is UNDECODABLE:
                    await refuse(context)
                try:
                    return await behaviour(request, context)
                except grpc.aio.AbortError:
                    raise
                except Exception:
                    await fail(context)

        elif inspect.isasyncgenfunction(behaviour):

            async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator:
                if request is UNDECODABLE:
                    await refuse(context)
                try:
                    async for response in behaviour(request, context):
                        yield response
                except grpc.aio.AbortError:
                    raise
                except Exception:
                    await fail(context)

        else:  # a synchronous handler runs in grpc's own thread pool: left as it is
            return handler
        return handler._replace(request_deserializer=read, **{kind: call})


def _kind(handler: grpc.RpcMethodHandler) -> str:
    """The handler's behaviour attribute: ``unary_unary``, ``unary_stream``..."""
    requests = "stream" if handler.request_streaming else "unary"
    return f"{requests}_{'stream' if handler.response_streaming else 'unary'}"


class _UndecodableRequest(Exception):
    """Raised from a bidirectional call's request stream at a message that did not decode:
    the call ends INVALID_ARGUMENT."""
