"""Liveness, readiness and the Prometheus scrape."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from latentserve.server.frontends.rest.dependencies import Service
from latentserve.server.frontends.rest.errors import error_response
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE

router = APIRouter(tags=["health"])

#: What orchestrators and scrapers poll (the Open Inference Protocol's health included):
#: answered while draining, and not traced (a probe every few seconds is no one's request).
PROBES = frozenset({"/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"})


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(service: Service) -> Response:
    if not service.ready:
        return error_response(503, "unavailable", "not ready")
    return JSONResponse({"status": "ready"})


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format, or OpenMetrics (with "
            "exemplars) when the Accept header asks for application/openmetrics-text",
            "content": {
                media_type: {"schema": {"type": "string"}}
                for media_type in (CONTENT_TYPE_PLAIN_0_0_4, OPENMETRICS_CONTENT_TYPE)
            },
        }
    },
)
async def metrics(service: Service, request: Request) -> Response:
    # OpenMetrics when the scraper asks for it: the format that carries exemplars (the
    # latency histograms' trace ids). Accept is read, not declared: it is content
    # negotiation, not a parameter of the call.
    encode, media_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(service.metrics.scrape), headers={"Content-Type": media_type})
