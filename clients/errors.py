"""Typed client exceptions: one per kind of server error, the same for REST and gRPC.

Callers branch on the exception class (``except ModelNotFoundError``) rather than on
status codes, so code written against one transport works unchanged against the other.
Each exception carries the server's own message and, where the server named one, the
offending request field.
"""

from __future__ import annotations

import grpc


class LatentServeError(Exception):
    """Base of every error the SDK raises for a failed call."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "internal",
        field: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field
        self.retry_after_s = retry_after_s  # set by the server on "overloaded"

    def __str__(self) -> str:
        where = f" (field {self.field!r})" if self.field else ""
        return f"{self.code}: {self.message}{where}"


class ModelNotFoundError(LatentServeError):
    """The model (or ``name@version``) is not in the server's repository."""


class InvalidArgumentError(LatentServeError):
    """The request was malformed or out of the model's limits (e.g. ``n`` too large)."""


class UnsupportedError(LatentServeError):
    """The model lacks the capability asked for (e.g. ``encode`` on a GAN)."""


class OverloadedError(LatentServeError):
    """The server's queue is full; retry later with backoff."""


class UnavailableError(LatentServeError):
    """The server could not be reached or is not ready."""


class DeadlineExceededError(UnavailableError):
    """The call's deadline (the client's ``timeout``) passed before the answer came; the
    server drops work of a call it can no longer answer in time."""


class UnauthenticatedError(LatentServeError):
    """The server needs a bearer token and got none, or one it does not know."""


class PermissionDeniedError(LatentServeError):
    """The token does not allow the call (e.g. a reload without an admin token)."""


class ServerError(LatentServeError):
    """The server failed while handling a valid request."""


class JobNotFoundError(LatentServeError):
    """No job has this id: it never existed, or it finished longer ago than the server keeps
    finished jobs."""


class JobCancelledError(LatentServeError):
    """The job was cancelled (``cancel_job``, or the client that ran it went away) before
    it finished."""


# The server's documented errors (docs/errors.md): wire code, HTTP status, exception.
_ERRORS: list[tuple[str, int, type[LatentServeError]]] = [
    ("not_found", 404, ModelNotFoundError),
    ("invalid_argument", 422, InvalidArgumentError),
    ("payload_too_large", 413, InvalidArgumentError),
    ("unsupported", 400, UnsupportedError),
    ("overloaded", 429, OverloadedError),
    ("unavailable", 503, UnavailableError),
    ("cancelled", 409, JobCancelledError),
    ("deadline_exceeded", 504, DeadlineExceededError),
    ("unauthenticated", 401, UnauthenticatedError),
    ("permission_denied", 403, PermissionDeniedError),
    ("internal", 500, ServerError),
]
_BY_CODE = {code: cls for code, _, cls in _ERRORS}
# When a REST body carries no known code (e.g. a proxy's error page), its status decides.
_CODE_BY_HTTP_STATUS = {status: code for code, status, _ in _ERRORS}

_BY_GRPC_STATUS: dict[grpc.StatusCode, type[LatentServeError]] = {
    grpc.StatusCode.NOT_FOUND: ModelNotFoundError,
    grpc.StatusCode.CANCELLED: JobCancelledError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgumentError,
    grpc.StatusCode.UNIMPLEMENTED: UnsupportedError,
    grpc.StatusCode.FAILED_PRECONDITION: UnsupportedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: OverloadedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
}


def from_http(
    status: int,
    body: object,
    retry_after: str | None = None,
    *,
    not_found: type[LatentServeError] = ModelNotFoundError,
) -> LatentServeError:
    """Build the typed exception for a REST error response (``{"error": {...}}``).

    The server answers ``not_found`` for an unknown model and an unknown job alike; the
    caller knows which it looked up and passes ``not_found=JobNotFoundError`` for job ids.
    """
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or "")
        message = str(error.get("message") or f"HTTP {status}")
        field = error.get("field")
    else:
        code, message, field = "", f"HTTP {status}: {body!r}"[:500], None
    by_status = _CODE_BY_HTTP_STATUS.get(status, "internal")
    cls = _BY_CODE.get(code) or _BY_CODE[by_status]  # an unknown code: the status decides
    code = code or by_status
    if cls is ModelNotFoundError:
        cls = not_found
    return cls(
        message,
        code=code,
        field=str(field) if field else None,
        retry_after_s=_seconds(retry_after),
    )


def from_grpc(
    error: grpc.RpcError, *, not_found: type[LatentServeError] = ModelNotFoundError
) -> LatentServeError:
    """Build the typed exception for a failed gRPC call, keeping the server's details."""
    status = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = (error.details() if hasattr(error, "details") else None) or str(status)
    retry_after = _trailing(error, "retry-after")
    pushback_ms = _seconds(_trailing(error, "grpc-retry-pushback-ms"))
    if retry_after is None and pushback_ms is not None and pushback_ms >= 0:
        retry_after = f"{pushback_ms / 1000:g}"
    cls = _BY_GRPC_STATUS.get(status, ServerError)
    code = _code_name(cls)
    if status == grpc.StatusCode.RESOURCE_EXHAUSTED and retry_after is None:
        # gRPC's own message-size limit, not the server's queue (which names a delay)
        cls, code = InvalidArgumentError, "payload_too_large"
    if cls is ModelNotFoundError:
        cls = not_found
    return cls(
        details,
        code=code,
        field=_trailing(error, "field"),
        retry_after_s=_seconds(retry_after),
    )


def status_lost_to_a_write(error: grpc.RpcError) -> bool:
    """grpcio's asyncio client reports INTERNAL, losing the server's status, when a
    request is being written just as the server ends a call (grpc/grpc#36066)."""
    debug = error.debug_error_string() if hasattr(error, "debug_error_string") else ""
    return error.code() == grpc.StatusCode.INTERNAL and "SendMessageOperation" in (debug or "")


def status_code(number: int) -> grpc.StatusCode:
    """The gRPC status of a numeric code (``RequestError.code``); UNKNOWN if none is."""
    return _STATUS_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


_STATUS_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def from_status(
    status: int, message: str, field: str = "", retry_after_s: float = 0
) -> LatentServeError:
    """Build the typed exception for one refused request of a call that went on (a
    ``SampleMany`` answer's ``RequestError``: its gRPC status code and details)."""
    code = status_code(status)
    cls = _BY_GRPC_STATUS.get(code, ServerError)
    return cls(
        message or code.name,
        code=_code_name(cls),
        field=field or None,
        retry_after_s=retry_after_s or None,
    )


def from_code(code: str, message: str, field: str | None = None) -> LatentServeError:
    """Build the typed exception for a job's ``error`` event (the codes of REST bodies)."""
    return _BY_CODE.get(code, ServerError)(message, code=code, field=field or None)


def _trailing(error: grpc.RpcError, name: str) -> str | None:
    """The server names the offending field and the retry delay in trailing metadata."""
    trailing = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == name:
            return value if isinstance(value, str) else value.decode()
    return None


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _code_name(cls: type[LatentServeError]) -> str:
    """The first code of the table that raises ``cls``."""
    return next((code for code, _, known in _ERRORS if known is cls), "internal")
