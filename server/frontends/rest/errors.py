"""Domain errors and framework refusals -> HTTP status and the JSON error body, in one place."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from latentserve.server.engine.jobs import Cancelled, JobNotFound
from latentserve.server.engine.service import GenerativeService
from latentserve.server.errors import (
    MAX_MESSAGE_CHARS,
    DeadlineExceeded,
    InvalidArgument,
    ModelNotFound,
    Overloaded,
    PermissionDenied,
    ServingError,
    Unauthenticated,
    Unavailable,
    Unsupported,
    error_body,
    shown,
)
from latentserve.server.frontends.rest.dependencies import PROTOCOL
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Route

HTTP_STATUS: dict[type[ServingError], int] = {
    ModelNotFound: 404,
    JobNotFound: 404,
    Cancelled: 409,
    InvalidArgument: 422,
    Unsupported: 400,
    Overloaded: 429,
    Unavailable: 503,
    DeadlineExceeded: 504,
    Unauthenticated: 401,
    PermissionDenied: 403,
}
_MESSAGES = {
    "json_invalid": "not valid JSON",
    "model_attributes_type": "expected a JSON object (send Content-Type: application/json)",
}
# Why a body could not be read as JSON, by what reading it raised (JSONDecodeError is a
# ValueError: the first match in this order wins).
_UNREADABLE: tuple[tuple[type[BaseException], str], ...] = (
    (json.JSONDecodeError, "not valid JSON"),
    (UnicodeDecodeError, "not valid UTF-8"),
    (ValueError, "a JSON number has too many digits"),
    (RecursionError, "JSON nested too deeply"),
)


def unreadable_reason(exc: BaseException | None) -> str:
    """Why a body could not be read, for the client: ``exc`` is what reading it raised."""
    reasons = (why for kind, why in _UNREADABLE if isinstance(exc, kind))
    return next(reasons, "cannot be read as JSON")


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: dict | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message, field), status_code=status, headers=headers)


def _field(loc: tuple) -> str:
    """``("body", "images", 3)`` -> ``images[3]``: the name a client can act on."""
    parts = [p for p in loc if p not in ("body", "path", "query")] or ["body"]
    out = str(parts[0])
    for part in parts[1:]:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def path_methods(routes: Iterable[BaseRoute]) -> list[tuple[re.Pattern[str], frozenset[str]]]:
    """Each route's path pattern and methods: what ``Allow`` is built from."""
    return [
        (route.path_regex, frozenset(route.methods))
        for route in routes
        if isinstance(route, Route) and route.methods
    ]


def _allowed(request: Request) -> str:
    """Every method the request's path answers (Starlette's own 405 names only the first
    route that matched the path, e.g. GET but not DELETE of /v1/jobs/{id})."""
    methods: set[str] = set()
    path = request.scope["path"].removeprefix(request.scope.get("root_path", ""))
    for pattern, route_methods in request.app.state.path_methods:
        if pattern.match(path):
            methods |= route_methods
    return ", ".join(sorted(methods))


def add_error_handlers(app: FastAPI, service: GenerativeService) -> None:
    def record(request: Request, status: str) -> None:
        method = getattr(request.scope.get("route"), "name", "unknown")
        service.record_rejection(request.path_params.get("model", ""), method, PROTOCOL, status)

    @app.exception_handler(ServingError)
    async def serving_error(request: Request, exc: ServingError) -> JSONResponse:
        if not exc.recorded:
            record(request, exc.code)
        headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, Overloaded) else None
        if isinstance(exc, Unauthenticated):
            headers = {"WWW-Authenticate": "Bearer"}
        status = HTTP_STATUS.get(type(exc), 500)
        return error_response(status, exc.code, exc.message, getattr(exc, "field", None), headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        field = "body" if first["type"] == "json_invalid" else _field(tuple(first["loc"]))
        # As a domain error, so the field (a client's JSON key) is cut like every other.
        return await serving_error(
            request, InvalidArgument(field, _MESSAGES.get(first["type"], first["msg"]))
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            # The path exists but not with this method; OPTIONS included: with CORS on, the
            # CORS middleware answers browsers' preflights before here, and with it off a
            # preflight must fail plainly. Allow names what the path does take (RFC 9110).
            allow = {"Allow": _allowed(request)}
            message = f"{shown(request.method)} is not allowed here; allowed: {allow['Allow']}"
            return error_response(405, "method_not_allowed", message, headers=allow)
        code = {404: "not_found"}.get(exc.status_code)
        if code is not None:
            message = shown(str(exc.detail), MAX_MESSAGE_CHARS)
            return error_response(exc.status_code, code, message, headers=exc.headers)
        # Any other refusal by the framework means it could not read the body.
        record(request, "invalid_argument")
        reason = unreadable_reason(exc.__cause__)
        return error_response(422, "invalid_argument", f"body: {reason}", "body")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, "internal", "internal server error")
