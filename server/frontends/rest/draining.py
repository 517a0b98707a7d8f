"""New requests refused while the server drains, so that accepted ones can finish."""

from __future__ import annotations

from latentserve.server.engine.service import GenerativeService
from latentserve.server.frontends.rest.errors import error_response
from latentserve.server.frontends.rest.health import PROBES
from starlette.types import ASGIApp, Receive, Scope, Send


class RefuseWhileDraining:
    """Once the server drains, new requests get 503 (retry elsewhere) while the accepted
    ones finish; health and metrics still answer, so ``/readyz`` tells balancers to go."""

    def __init__(self, app: ASGIApp, service: GenerativeService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.service.draining and scope["path"] not in PROBES:
            message = "the server is shutting down"
            refusal = error_response(503, "unavailable", message, headers={"Connection": "close"})
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)
