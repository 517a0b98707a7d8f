"""Pick a client by URL scheme, so one setting (a URL) chooses the transport."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from latentserve.clients.grpc_async import AsyncGrpcClient
from latentserve.clients.grpc_client import GrpcClient
from latentserve.clients.rest import RestClient
from latentserve.clients.rest_async import AsyncRestClient
from latentserve.clients.retry import DEFAULT_RETRY, Retry
from latentserve.clients.tls import ClientTLS

Client = RestClient | GrpcClient
AsyncClient = AsyncRestClient | AsyncGrpcClient
TLS_SCHEMES = ("https", "grpcs")


def connect(
    url: str,
    *,
    timeout: float = 60.0,
    token: str | None = None,
    ca_file: Path | str | None = None,
    client_cert: Path | str | None = None,
    client_key: Path | str | None = None,
    retry: Retry = DEFAULT_RETRY,
) -> Client:
    """A client for ``url``: ``http(s)://host:port`` is REST, ``grpc://host:port`` gRPC and
    ``grpcs://host:port`` gRPC over TLS.

    ``token`` is the server's bearer token. Over TLS, ``ca_file`` is the CA that signed the
    server's certificate (default: the system's trusted CAs) and ``client_cert`` with
    ``client_key`` the certificate a gRPC server may require of its clients. ``retry``
    bounds how calls refused for now (overloaded, unavailable) are tried again
    (``NO_RETRY``: never).
    """
    transport, address, tls = _resolve(url, ca_file, client_cert, client_key)
    cls = RestClient if transport == "rest" else GrpcClient
    return cls(address, timeout=timeout, token=token, tls=tls, retry=retry)


def connect_async(
    url: str,
    *,
    timeout: float = 60.0,
    token: str | None = None,
    ca_file: Path | str | None = None,
    client_cert: Path | str | None = None,
    client_key: Path | str | None = None,
    retry: Retry = DEFAULT_RETRY,
) -> AsyncClient:
    """The asyncio form of :func:`connect` (call it inside the event loop that uses it):

    >>> async with connect_async("grpc://127.0.0.1:50051") as client:
    ...     result = await client.sample("vae-mnist", n=4, seed=0)
    """
    transport, address, tls = _resolve(url, ca_file, client_cert, client_key)
    cls = AsyncRestClient if transport == "rest" else AsyncGrpcClient
    return cls(address, timeout=timeout, token=token, tls=tls, retry=retry)


def _resolve(
    url: str,
    ca_file: Path | str | None,
    client_cert: Path | str | None,
    client_key: Path | str | None,
) -> tuple[str, str, ClientTLS | None]:
    """(``rest`` or ``grpc``, the base URL or ``host:port`` target, TLS options)."""
    parts = urlsplit(url)
    tls = None
    if parts.scheme in TLS_SCHEMES:
        tls = ClientTLS(ca_file, client_cert, client_key)
    elif any(option is not None for option in (ca_file, client_cert, client_key)):
        raise ValueError(f"TLS options need an https:// or grpcs:// URL, got {url!r}")
    if parts.scheme in ("http", "https"):
        return "rest", url, tls
    if parts.scheme in ("grpc", "grpcs"):
        if not parts.netloc or parts.path not in ("", "/"):
            raise ValueError(f"expected {parts.scheme}://host:port, got {url!r}")
        return "grpc", parts.netloc, tls
    raise ValueError(
        f"unsupported URL scheme in {url!r}: use http://, https://, grpc:// or grpcs://"
    )
