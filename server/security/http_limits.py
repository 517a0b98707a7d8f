"""HTTP/1.1 connection limits that uvicorn's httptools protocol lacks.

httptools gathers a header line without bound, and uvicorn starts no timer before a
request's headers are complete, so one client could hold tens of megabytes per connection
or keep any number of connections open by sending a byte now and then (slowloris). The
protocol here counts the bytes of a request's head as they arrive (431 past
``max_header_bytes``): both the bytes the parser holds in a partial head between reads and
the URL and header fields it parses within one read, so a head refused byte by byte is
refused in one write too. It gives the head ``http_header_timeout_s`` to arrive from the
connection's first byte or the request's (408) and the body ``http_body_timeout_s`` (the
connection is closed). Every refusal at this layer (those two, 400 for a request that is
not HTTP, 503 past the open-connection cap) carries the JSON error body REST errors carry.
Idle keep-alive, the connection cap and the listen backlog are uvicorn's own settings, set
from ours.
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any

from latentserve.server.errors import error_body
from latentserve.server.settings import Settings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; uvicorn then asks for the 400, and
    ``send_400_response`` answers the refusal recorded instead."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds on a request's head size and on the time
    its head and body may take. ``settings`` is set on the subclass ``http_options`` makes."""

    settings: Settings

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0  # bytes received since the head began, while it is partial
        self._parsed_head = 0  # bytes of URL and header fields parsed for this request
        self._awaiting_head = True
        self._refusal: tuple[int, str, str] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._arm(self.settings.http_header_timeout_s, self._head_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Still no complete head after this chunk: refuse once it is over the limit, so
        # the parser never holds more than the limit plus one read.
        if self._awaiting_head and self._head_bytes > self.settings.max_header_bytes:
            self._answer_once(*self._head_too_large())

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._parsed_head = 0
        if self._timer is None:  # the next request on a kept-alive connection
            self._arm(self.settings.http_header_timeout_s, self._head_too_slow)

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if (
            self.limit_concurrency is not None
            and max(len(self.connections), len(self.tasks)) >= self.limit_concurrency
        ):
            # uvicorn would answer its plain-text 503 here; this one says it in JSON.
            self._refuse(503, "unavailable", "too many open connections; retry shortly")
        self._awaiting_head = False
        self._head_bytes = 0
        self._arm(self.settings.http_body_timeout_s, self._body_too_slow)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._awaiting_head = True
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to anything the parser refused (a callback's refusal included)."""
        self._answer_once(*(self._refusal or (400, "invalid_request", "not a valid HTTP request")))

    def _count_head(self, size: int) -> None:
        self._parsed_head += size
        if self._parsed_head > self.settings.max_header_bytes:
            self._refuse(*self._head_too_large())

    def _head_too_large(self) -> tuple[int, str, str]:
        return (
            431,
            "headers_too_large",
            f"request head exceeds {self.settings.max_header_bytes} bytes",
        )

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._refusal = (status, code, message)
        raise _Refused(message)

    def _arm(self, delay: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_too_slow(self) -> None:
        self._timer = None
        limit = self.settings.http_header_timeout_s
        self._answer_once(408, "request_timeout", f"request head not received within {limit:g}s")

    def _body_too_slow(self) -> None:
        # The handler is already waiting for this body: closing tells it the client left.
        self._timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _answer_once(self, status: int, code: str, message: str) -> None:
        """Answer ``status`` with the JSON error body (unless a response already began on
        this connection) and close it; a connection being closed is left alone."""
        if self.transport.is_closing():
            return
        self._disarm()
        if self.cycle is None or self.cycle.response_complete:
            body = json.dumps(error_body(code, message)).encode()
            head = (
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n"
                % (status, HTTPStatus(status).phrase.encode(), len(body))
            )
            self.transport.write(head + body)
        self.transport.close()


def http_options(settings: Settings) -> dict[str, Any]:
    """``uvicorn.Config`` keyword arguments that apply the HTTP limits of ``settings``."""
    protocol = type("LatentserveHttpProtocol", (GuardedHttpToolsProtocol,), {"settings": settings})
    return {
        "http": protocol,
        "timeout_keep_alive": settings.http_keep_alive_s,
        "limit_concurrency": settings.max_http_connections,
        "backlog": settings.http_backlog,
    }
