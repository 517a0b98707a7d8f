"""HTTP/1.1 connection limits that uvicorn's httptools protocol lacks.

httptools gathers a header line without bound, and uvicorn starts no timer before a
request's headers are complete, so one client could hold tens of megabytes per connection
or keep any number of connections open by sending a byte now and then (slowloris). The
protocol here counts the bytes of a request's head (431 past ``max_header_bytes``), gives
the head ``http_header_timeout_s`` to arrive from the connection's first byte or the
request's (408) and the body ``http_body_timeout_s`` (the connection is closed). Idle
keep-alive, the number of open connections (uvicorn answers 503 past it) and the listen
backlog are uvicorn's own settings, set from ours.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from latentserve.server.settings import Settings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds on a request's head size and on the time
    its head and body may take. ``settings`` is set on the subclass ``http_options`` makes."""

    settings: Settings

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._awaiting_head = True
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
        limit = self.settings.max_header_bytes
        if self._awaiting_head and self._head_bytes > limit and not self.transport.is_closing():
            self._answer_and_close(431, "headers_too_large", f"request head exceeds {limit} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._timer is None:  # the next request on a kept-alive connection
            self._arm(self.settings.http_header_timeout_s, self._head_too_slow)

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._head_bytes = 0
        self._arm(self.settings.http_body_timeout_s, self._body_too_slow)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._awaiting_head = True
        super().on_message_complete()

    def _arm(self, delay: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_too_slow(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            limit = self.settings.http_header_timeout_s
            self._answer_and_close(
                408, "request_timeout", f"request head not received within {limit:g}s"
            )

    def _body_too_slow(self) -> None:
        # The handler is already waiting for this body: closing tells it the client left.
        self._timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _answer_and_close(self, status: int, code: str, message: str) -> None:
        self._disarm()
        if self.cycle is None or self.cycle.response_complete:
            body = json.dumps({"error": {"code": code, "message": message, "field": None}})
            head = (
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n"
                % (status, _REASONS[status], len(body))
            )
            self.transport.write(head + body.encode())
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
