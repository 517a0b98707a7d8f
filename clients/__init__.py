"""Python SDK for a latentserve server (REST and gRPC) and the client-side CLI.

>>> from latentserve.clients import connect
>>> with connect("grpc://127.0.0.1:50051") as client:
...     result = client.sample("vae-mnist", n=4, seed=0)

The SDK imports only HTTP/gRPC libraries and the ``latentserve.v1`` stubs: it never pulls
in the server or the training code. Names are resolved lazily so that ``latentserve``'s
CLI, which imports ``latentserve.clients.cli`` at start-up, does not pay for gRPC/httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Client": "transport",
    "connect": "transport",
    "AsyncClient": "transport",
    "connect_async": "transport",
    "AsyncRestClient": "rest_async",
    "AsyncGrpcClient": "grpc_async",
    "GrpcClient": "grpc_client",
    "RestClient": "rest",
    "LocalServer": "local",
    "ImageShape": "results",
    "InterpolationFrame": "results",
    "InterpolationResult": "results",
    "LogProbResult": "results",
    "ModelInfo": "results",
    "SampleChunk": "results",
    "SampleResult": "results",
    "JobInfo": "results",
    "JobEvent": "results",
    "Accepted": "results",
    "Queued": "results",
    "Progress": "results",
    "Preview": "results",
    "Result": "results",
    "LatentServeError": "errors",
    "ModelNotFoundError": "errors",
    "JobNotFoundError": "errors",
    "JobCancelledError": "errors",
    "InvalidArgumentError": "errors",
    "UnsupportedError": "errors",
    "OverloadedError": "errors",
    "UnavailableError": "errors",
    "UnauthenticatedError": "errors",
    "ClientTLS": "tls",
    "DeadlineExceededError": "errors",
    "PermissionDeniedError": "errors",
    "ReloadResult": "results",
    "ServerError": "errors",
    "Retry": "retry",
    "NO_RETRY": "retry",
}

__all__ = [
    "NO_RETRY",
    "Accepted",
    "AsyncClient",
    "AsyncGrpcClient",
    "AsyncRestClient",
    "Client",
    "ClientTLS",
    "DeadlineExceededError",
    "GrpcClient",
    "ImageShape",
    "InterpolationFrame",
    "InterpolationResult",
    "InvalidArgumentError",
    "JobCancelledError",
    "JobEvent",
    "JobInfo",
    "JobNotFoundError",
    "LatentServeError",
    "LocalServer",
    "LogProbResult",
    "ModelInfo",
    "ModelNotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "Preview",
    "Progress",
    "Queued",
    "ReloadResult",
    "RestClient",
    "Result",
    "Retry",
    "SampleChunk",
    "SampleResult",
    "ServerError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnsupportedError",
    "connect",
    "connect_async",
]

if TYPE_CHECKING:
    from latentserve.clients.errors import (
        DeadlineExceededError,
        InvalidArgumentError,
        JobCancelledError,
        JobNotFoundError,
        LatentServeError,
        ModelNotFoundError,
        OverloadedError,
        PermissionDeniedError,
        ServerError,
        UnauthenticatedError,
        UnavailableError,
        UnsupportedError,
    )
    from latentserve.clients.grpc_async import AsyncGrpcClient
    from latentserve.clients.grpc_client import GrpcClient
    from latentserve.clients.local import LocalServer
    from latentserve.clients.rest import RestClient
    from latentserve.clients.rest_async import AsyncRestClient
    from latentserve.clients.results import (
        Accepted,
        ImageShape,
        InterpolationFrame,
        InterpolationResult,
        JobEvent,
        JobInfo,
        LogProbResult,
        ModelInfo,
        Preview,
        Progress,
        Queued,
        ReloadResult,
        Result,
        SampleChunk,
        SampleResult,
    )
    from latentserve.clients.retry import NO_RETRY, Retry
    from latentserve.clients.tls import ClientTLS
    from latentserve.clients.transport import AsyncClient, Client, connect, connect_async


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return __all__
