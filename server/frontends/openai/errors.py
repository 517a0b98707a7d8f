"""Errors in the OpenAI API's shape, ``{"error": {"message", "type", "param", "code"}}``, for
this frontend's routes only (the REST routes keep theirs).

The routes use :class:`OpenAIRoute`, which catches what the handler raises — domain errors,
FastAPI's validation errors, unreadable bodies — before the app's REST error handlers see
it, so the mapping lives here once for these routes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from latentserve.server.engine.jobs import Cancelled, JobNotFound
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
)
from pydantic import ValidationError
from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)
PROTOCOL = "openai"

HTTP_STATUS: dict[type[ServingError], int] = {
    InvalidArgument: 400,
    Unsupported: 400,
    Unauthenticated: 401,
    PermissionDenied: 403,
    ModelNotFound: 404,
    JobNotFound: 404,
    Cancelled: 409,
    Overloaded: 429,
    Unavailable: 503,
    DeadlineExceeded: 504,
}
_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
# The OpenAI API's own name where it has one; otherwise latentserve's stable code.
_CODES = {ModelNotFound: "model_not_found"}


def error_json(error: ServingError) -> dict[str, Any]:
    """The ``{"error": {...}}`` body of ``error``, also sent as a streamed error event."""
    status = HTTP_STATUS.get(type(error), 500)
    code = _CODES.get(type(error), error.code)
    return refusal_json(status, code, error.message, getattr(error, "field", None))


def refusal_json(status: int, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    """The API's error body for an answer of ``status``; as an ``ErrorShape``, it is also
    the body of refusals sent for this API's paths before routing (token, body size)."""
    kind = "server_error" if status >= 500 else _TYPES.get(status, "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def invalid_from(errors: list[Any]) -> InvalidArgument:
    """The first of pydantic's (or FastAPI's) validation errors as an ``InvalidArgument``
    naming the field."""
    first = errors[0]
    parts = [str(p) for p in first["loc"] if p != "body"]
    field = ".".join(parts) or "body"
    if first["type"] == "extra_forbidden":
        return InvalidArgument(field, "not a parameter of this API")
    if first["type"] == "json_invalid":
        return InvalidArgument("body", "not valid JSON")
    return InvalidArgument(field, first["msg"])


def _response(error: ServingError) -> JSONResponse:
    headers = None
    if isinstance(error, Overloaded):
        headers = {"Retry-After": str(error.retry_after_s)}
    status = HTTP_STATUS.get(type(error), 500)
    return JSONResponse(error_json(error), status_code=status, headers=headers)


class OpenAIRoute(APIRoute):
    """An ``APIRoute`` whose every refusal is answered in the OpenAI API's error shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                error: ServingError = invalid_from(list(exc.errors()))
            except ValidationError as exc:
                error = invalid_from(exc.errors())
            except HTTPException as exc:  # the body could not be read (JSON, multipart)
                error = InvalidArgument("body", str(exc.detail))
            except ServingError as exc:
                error = exc
            except Exception:  # noqa: BLE001 - answered as the API's 500, never a traceback
                log.exception("%s %s failed", request.method, request.url.path)
                error = ServingError("internal server error")
            if not error.recorded:
                service = request.app.state.service
                service.record_rejection("", self.name, PROTOCOL, error.code)
            return _response(error)

        return answer
