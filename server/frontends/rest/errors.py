"""Domain errors and framework refusals -> HTTP status and the JSON error body, in one place."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from latentserve.server.engine.jobs import Cancelled, JobNotFound
from latentserve.server.engine.service import GenerativeService
from latentserve.server.errors import (
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
)
from latentserve.server.frontends.rest.dependencies import PROTOCOL
from starlette.exceptions import HTTPException as StarletteHTTPException

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
# Why FastAPI could not read a body it answers 400 for (the cause of its HTTPException).
_UNREADABLE = {
    UnicodeDecodeError: "not valid UTF-8",
    ValueError: "a JSON number has too many digits",
    RecursionError: "JSON nested too deeply",
}


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
        message = _MESSAGES.get(first["type"], first["msg"])
        record(request, "invalid_argument")
        return error_response(422, "invalid_argument", f"{field}: {message}", field)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        if code is not None:
            return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)
        # Any other refusal by the framework means it could not read the body.
        reason = _UNREADABLE.get(type(exc.__cause__), "cannot be read as JSON")
        record(request, "invalid_argument")
        return error_response(422, "invalid_argument", f"body: {reason}", "body")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, "internal", "internal server error")
