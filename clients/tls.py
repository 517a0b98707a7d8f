"""How a client reaches a server over TLS, and the bearer token it sends.

One ``ClientTLS`` gives both transports what they need: an ``ssl.SSLContext`` for HTTPS
(httpx, urllib) and channel credentials for gRPC. ``ca_file`` is the CA that signed the
server's certificate (none: the system's trusted CAs); ``cert_file``/``key_file`` are the
client's own certificate, for gRPC servers that require one.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc


@dataclass(frozen=True)
class ClientTLS:
    ca_file: Path | str | None = None
    cert_file: Path | str | None = None
    key_file: Path | str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs its key: give both or neither")

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=_str(self.ca_file))
        if self.cert_file is not None:
            context.load_cert_chain(str(self.cert_file), _str(self.key_file))
        return context

    def grpc_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_file),
            private_key=_read(self.key_file),
            certificate_chain=_read(self.cert_file),
        )


def bearer(token: str | None) -> dict[str, str]:
    """The ``Authorization`` header (REST) or metadata (gRPC) carrying ``token``."""
    return {"authorization": f"Bearer {token}"} if token else {}


def _str(path: Path | str | None) -> str | None:
    return None if path is None else str(path)


def _read(path: Path | str | None) -> bytes | None:
    return None if path is None else Path(path).read_bytes()
