"""Domain errors of the serving path.

The service and pipelines raise these; each transport maps them to its own status codes in
exactly one place (``frontends/rest/errors.py`` for REST, ``frontends/status.py`` for gRPC), so a
new error kind cannot be reported differently over HTTP and gRPC.

Clients may send megabytes in any field: a message shows what was sent through ``shown``
(64 characters and "…"), and every message and field name is cut to a bounded length here,
where all of them are made, so no answer (nor gRPC's status details, which must fit the
client's metadata limit) repeats a whole input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

#: The most characters of a client's value an error message repeats.
SHOWN_CHARS = 64
#: The longest message or field name an error carries (a backstop: values go through
#: ``shown``, so a message built from a few of them stays under this).
MAX_MESSAGE_CHARS = 1024


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """``value`` as text cut to ``limit`` characters and "…", fit for an error message."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit] + "…"


class ServingError(Exception):
    """Base of every error a client is meant to see. ``code`` is the stable wire name."""

    code = "internal"
    recorded = False  # set once the service counted it, so transports never count twice

    def __init__(self, message: str) -> None:
        message = shown(message, MAX_MESSAGE_CHARS)
        super().__init__(message)
        self.message = message


INTERNAL_MESSAGE = "internal error"


def for_client(exc: BaseException) -> ServingError:
    """``exc`` as a client may see it: a ``ServingError`` as it is; anything else (a bug, a
    graph runtime's message naming files and tensors) as a generic internal error. Log the
    original where it is caught: its text goes to the log only, never over the wire."""
    return exc if isinstance(exc, ServingError) else ServingError(INTERNAL_MESSAGE)


class ModelNotFound(ServingError):
    code = "not_found"


class InvalidArgument(ServingError):
    """A request field is wrong; ``field`` names it (``n``, ``images[3]``) for the client."""

    code = "invalid_argument"

    def __init__(self, field: str, message: str) -> None:
        field = shown(field)  # a field may be named by the client (an unknown JSON key)
        super().__init__(f"{field}: {message}")
        self.field = field


class Unsupported(ServingError):
    """The model exists but lacks the capability (e.g. sampling from a plain autoencoder)."""

    code = "unsupported"


class Overloaded(ServingError):
    """The bounded queue is full; the client should retry after ``retry_after_s`` seconds."""

    code = "overloaded"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, int(retry_after_s))


class Unavailable(ServingError):
    """The server cannot answer now (models still loading, shutting down, timed out)."""

    code = "unavailable"


class DeadlineExceeded(ServingError):
    """The client's deadline (a gRPC deadline, REST's ``X-Request-Timeout``) passed first."""

    code = "deadline_exceeded"


class Unauthenticated(ServingError):
    """A call that needs a token came without one (401 / UNAUTHENTICATED)."""

    code = "unauthenticated"


class PermissionDenied(ServingError):
    """The token presented does not allow the call, or the call is disabled (403 /
    PERMISSION_DENIED)."""

    code = "permission_denied"


def error_body(code: str, message: str, field: str | None = None) -> dict[str, dict]:
    """The JSON body of every HTTP refusal, whichever layer sends it (routes, auth, limits)."""
    return {"error": {"code": code, "message": message, "field": field}}


#: A refusal's JSON body in one API's error shape: ``(status, code, message) -> body``.
ErrorShape = Callable[[int, str, str], dict[str, Any]]


class RefusalBodies:
    """The body of a refusal sent before routing (a missing token, a body too large) in the
    error shape of the API its path belongs to: ``error_body``'s unless a path prefix has
    a shape of its own. The composition root says which prefix takes which shape, so the
    layers that refuse need not know which APIs are served."""

    def __init__(self, shapes: Mapping[str, ErrorShape] | None = None) -> None:
        self._shapes = {prefix.rstrip("/"): shape for prefix, shape in (shapes or {}).items()}

    def __call__(self, path: str, status: int, code: str, message: str) -> dict[str, Any]:
        for prefix, shape in self._shapes.items():
            if path == prefix or path.startswith(prefix + "/"):
                return shape(status, code, message)
        return error_body(code, message)
