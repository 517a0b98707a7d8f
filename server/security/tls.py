"""TLS for both transports from one certificate and key.

REST (uvicorn) and gRPC serve the same certificate chain. With ``tls_client_ca`` gRPC also
requires each client to present a certificate that CA signed (mutual TLS); REST keeps to
bearer tokens, since HTTPS health probes (a Kubernetes kubelet's, a load balancer's)
present no client certificate. Files are checked with the standard ``ssl`` module at start,
so a missing file or a key that does not match its certificate is a clear error then, not
a failed handshake later.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from latentserve.server.settings import Settings


@dataclass(frozen=True)
class ServerTLS:
    cert: Path
    key: Path
    client_ca: Path | None = None

    def uvicorn_options(self) -> dict[str, Any]:
        return {"ssl_certfile": str(self.cert), "ssl_keyfile": str(self.key)}

    def grpc_credentials(self) -> grpc.ServerCredentials:
        pair = (self.key.read_bytes(), self.cert.read_bytes())
        ca = self.client_ca.read_bytes() if self.client_ca else None
        return grpc.ssl_server_credentials(
            [pair], root_certificates=ca, require_client_auth=ca is not None
        )


def server_tls(settings: Settings) -> ServerTLS | None:
    """The checked TLS files, or ``None`` to serve plain text."""
    cert, key, client_ca = settings.tls_cert, settings.tls_key, settings.tls_client_ca
    if cert is None and key is None:
        if client_ca is not None:
            raise ValueError("tls_client_ca needs tls_cert and tls_key: TLS carries client certs")
        return None
    if cert is None or key is None:
        raise ValueError("tls_cert and tls_key go together: give both or neither")
    for what, path in (("certificate", cert), ("key", key), ("client CA", client_ca)):
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"TLS {what} file not found: {path}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise ValueError(f"TLS certificate {cert} and key {key} do not load: {exc}") from exc
    if client_ca is not None:
        try:
            context.load_verify_locations(client_ca)
        except ssl.SSLError as exc:
            raise ValueError(f"TLS client CA {client_ca} does not load: {exc}") from exc
    return ServerTLS(cert, key, client_ca)


def add_grpc_port(server: grpc.aio.Server, address: str, tls: ServerTLS | None) -> int:
    """Listen on ``address``, with TLS when configured; the port actually bound."""
    if tls is None:
        return server.add_insecure_port(address)
    return server.add_secure_port(address, tls.grpc_credentials())
