"""Optional bearer-token authentication for both transports.

Tokens come from a file (one a line; blank lines and ``#`` comments skipped) and are kept
only as SHA-256 digests, each compared in constant time with the digest of what a client
sent, so a response's timing tells nothing about how close a guess was. REST gets a
pure-ASGI middleware (401 with ``WWW-Authenticate: Bearer`` before any body is read), gRPC a
server interceptor (UNAUTHENTICATED before any request is decoded). Paths in
``auth_exempt_paths`` pass untouched. Refusals are counted, and no token is ever logged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from fastapi import FastAPI
from latentserve.server.errors import RefusalBodies
from latentserve.server.metrics import ServerMetrics
from latentserve.server.security.tokens import SCHEME, bearer_token, known_token, read_tokens
from latentserve.server.settings import Settings
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

CODE = "unauthenticated"


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused: ``reason`` labels the metric, ``challenge`` is the
    ``WWW-Authenticate`` value (RFC 6750) and ``message`` what the client reads."""

    reason: str
    message: str
    challenge: str


_MISSING = Refusal(
    "missing",
    "authentication required: send the header 'Authorization: Bearer <token>'",
    'Bearer realm="latentserve"',
)
_INVALID = Refusal(
    "invalid",
    "the bearer token is not valid",
    'Bearer realm="latentserve", error="invalid_token"',
)


def is_exempt(path: str, exempt_paths: Iterable[str]) -> bool:
    """``/docs`` covers ``/docs`` and ``/docs/...``; a gRPC service path covers its methods;
    ``/`` (the playground page) covers only itself, never every path under it.
    A path with ``.`` or ``..`` segments is never exempt, whatever a proxy makes of it."""
    if any(segment in (".", "..") for segment in path.split("/")):
        return False
    return any(
        path == p or (p.rstrip("/") and path.startswith(p.rstrip("/") + "/")) for p in exempt_paths
    )


class BearerAuth:
    """The token check both transports share."""

    def __init__(
        self, digests: tuple[bytes, ...], exempt_paths: Iterable[str], metrics: ServerMetrics
    ) -> None:
        self._digests = digests
        self.exempt_paths = tuple(exempt_paths)
        self._refused = metrics.auth_refused

    @classmethod
    def from_settings(cls, settings: Settings, metrics: ServerMetrics) -> BearerAuth | None:
        """``None`` when no tokens file is set: the server is open, as before."""
        if settings.auth_tokens_file is None:
            return None
        digests = read_tokens(settings.auth_tokens_file)
        if settings.admin_tokens_file is not None:  # an admin may also make ordinary calls
            digests += read_tokens(settings.admin_tokens_file)
        log.info(
            "bearer-token authentication on: %d token(s) from %s",
            len(digests),
            settings.auth_tokens_file,
        )
        return cls(digests, settings.auth_exempt_paths, metrics)

    def exempt(self, path: str) -> bool:
        return is_exempt(path, self.exempt_paths)

    def check(self, authorization: str | None, protocol: str) -> Refusal | None:
        """``None`` if ``authorization`` (the header's value) carries a known token."""
        token = bearer_token(authorization)
        if token is None:
            refusal = _MISSING
        elif known_token(token, self._digests):
            return None
        else:
            refusal = _INVALID
        self._refused.labels(protocol, refusal.reason).inc()
        return refusal


class BearerAuthMiddleware:
    """REST: refuse before routing, so an unauthenticated client never gets a body parsed.
    ``bodies`` shapes the 401's body for the API of its path."""

    def __init__(self, app: ASGIApp, auth: BearerAuth, bodies: RefusalBodies | None = None) -> None:
        self.app = app
        self.auth = auth
        self.bodies = bodies or RefusalBodies()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.auth.exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        refusal = self.auth.check(header.decode("latin-1") if header else None, "rest")
        if refusal is None:
            await self.app(scope, receive, send)
            return
        headers = {"WWW-Authenticate": refusal.challenge}
        body = self.bodies(scope["path"], 401, CODE, refusal.message)
        response = JSONResponse(body, status_code=401, headers=headers)
        await response(scope, receive, send)


class BearerAuthInterceptor(grpc.aio.ServerInterceptor):
    """gRPC: a refused call gets a handler that aborts with UNAUTHENTICATED and leaves the
    request bytes undecoded."""

    def __init__(self, auth: BearerAuth) -> None:
        self.auth = auth

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None or self.auth.exempt(handler_call_details.method):
            return handler
        metadata = handler_call_details.invocation_metadata or ()
        value = next((v for k, v in metadata if k == "authorization"), None)
        refusal = self.auth.check(value if isinstance(value, str) else None, "grpc")
        return handler if refusal is None else _refusing(handler, refusal)


_HANDLER_FACTORIES = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def _refusing(handler: grpc.RpcMethodHandler, refusal: Refusal) -> grpc.RpcMethodHandler:
    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        trailing = (("www-authenticate", refusal.challenge),)
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, refusal.message, trailing)

    factory = _HANDLER_FACTORIES[(handler.request_streaming, handler.response_streaming)]
    return factory(refuse, response_serializer=handler.response_serializer)


def document(app: FastAPI, auth: BearerAuth) -> None:
    """Mark every protected operation in the OpenAPI document as needing the bearer
    token, so /docs offers an "Authorize" button that sends it."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes["bearerAuth"] = {"type": "http", "scheme": SCHEME}
        for path, operations in schema.get("paths", {}).items():
            if not auth.exempt(path):
                for operation in operations.values():
                    operation["security"] = [{"bearerAuth": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def protect_rest(
    app: FastAPI, auth: BearerAuth | None, bodies: RefusalBodies | None = None
) -> None:
    if auth is not None:
        app.add_middleware(BearerAuthMiddleware, auth=auth, bodies=bodies)
        document(app, auth)


def grpc_interceptors(auth: BearerAuth | None) -> tuple[grpc.aio.ServerInterceptor, ...]:
    return () if auth is None else (BearerAuthInterceptor(auth),)
