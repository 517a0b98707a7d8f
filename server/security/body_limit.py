"""A pure-ASGI request body limit: oversize bodies get 413 before any JSON parsing.

Declared lengths are checked from the header; chunked bodies are read up to the limit and
replayed, so no handler ever holds more than ``max_bytes`` of a request in memory.
"""

from __future__ import annotations

import json

from latentserve.server.errors import RefusalBodies
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimitMiddleware:
    """``bodies`` shapes the 413's body for the API of its path."""

    def __init__(self, app: ASGIApp, max_bytes: int, bodies: RefusalBodies | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.bodies = bodies or RefusalBodies()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = int(value) if value.isdigit() else None
                break
        if length is not None:
            if length > self.max_bytes:
                await self._refuse(scope, send)
                return
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(scope, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        message = f"request body exceeds {self.max_bytes} bytes"
        shaped = self.bodies(scope["path"], 413, "payload_too_large", message)
        body = json.dumps(shaped).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
