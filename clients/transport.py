"""Pick a client by URL scheme, so one setting (a URL) chooses the transport."""

from __future__ import annotations

from urllib.parse import urlsplit

from latentserve.clients.grpc_client import GrpcClient
from latentserve.clients.rest import RestClient

Client = RestClient | GrpcClient


def connect(url: str, *, timeout: float = 60.0) -> Client:
    """A client for ``url``: ``http(s)://host:port`` is REST, ``grpc://host:port`` is gRPC."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        return RestClient(url, timeout=timeout)
    if parts.scheme == "grpc":
        if not parts.netloc or parts.path not in ("", "/"):
            raise ValueError(f"expected grpc://host:port, got {url!r}")
        return GrpcClient(parts.netloc, timeout=timeout)
    raise ValueError(f"unsupported URL scheme in {url!r}: use http://, https:// or grpc://")
