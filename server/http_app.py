"""The HTTP port's app before security wraps it: latentserve's REST API with the OpenAI
Images API and the Open Inference Protocol beside it. A module of its own so that the
documentation's REST reference can build the app without the gRPC side (whose Open
Inference Protocol stubs share the ``inference`` proto package with Triton's clients)."""

from __future__ import annotations

from fastapi import FastAPI
from latentserve.server.engine.service import GenerativeService
from latentserve.server.errors import RefusalBodies
from latentserve.server.frontends import openai as openai_images
from latentserve.server.frontends.rest import create_rest_app
from latentserve.server.frontends.v2 import rest as v2_rest
from latentserve.server.security.admin import AdminTokens


def http_refusals() -> RefusalBodies:
    """The bodies of refusals made before routing (token, body size), in the error shape of
    the API the path belongs to."""
    return RefusalBodies({openai_images.PATH_PREFIX: openai_images.refusal_json})


def create_http_app(
    service: GenerativeService, admins: AdminTokens, refusals: RefusalBodies | None = None
) -> FastAPI:
    """Every API the HTTP port serves, before security wraps it: ours, and the OpenAI Images
    API and the Open Inference Protocol beside /v1 (same app and port). The documentation's
    REST reference is rendered from this app's OpenAPI document."""
    app = create_rest_app(
        service,
        admins,
        other_routers=(openai_images.router, v2_rest.router),
        refusal_bodies=refusals or http_refusals(),
        lean_endpoints=v2_rest.LEAN_ENDPOINTS,
    )
    service.metrics.allow_methods(v2_rest.CALLS)
    return app
