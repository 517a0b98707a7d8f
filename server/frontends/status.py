"""Domain errors -> gRPC status codes: one table for every gRPC frontend (latentserve.v1 and
the Open Inference Protocol), so an error kind cannot read differently between them."""

from __future__ import annotations

import grpc
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

GRPC_STATUS: dict[type[ServingError], grpc.StatusCode] = {
    ModelNotFound: grpc.StatusCode.NOT_FOUND,
    JobNotFound: grpc.StatusCode.NOT_FOUND,
    Cancelled: grpc.StatusCode.CANCELLED,
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    Unsupported: grpc.StatusCode.UNIMPLEMENTED,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
}


def grpc_status(exc: ServingError) -> grpc.StatusCode:
    return GRPC_STATUS.get(type(exc), grpc.StatusCode.INTERNAL)


def error_metadata(exc: ServingError) -> tuple[tuple[str, str], ...]:
    """Trailing metadata a client can act on: the offending field, when to retry."""
    metadata: list[tuple[str, str]] = []
    if isinstance(exc, InvalidArgument):
        metadata.append(("field", exc.field))
    if isinstance(exc, Overloaded):
        metadata.append(("retry-after", str(exc.retry_after_s)))
        # The standard trailer: gRPC's own client retries wait this long before trying again.
        metadata.append(("grpc-retry-pushback-ms", str(exc.retry_after_s * 1000)))
    return tuple(metadata)
