"""The REST app: one router per resource over the engine, errors mapped in one place.

Routes reach the engine through one dependency (``dependencies.Service``), set here on the
app's state; security (auth, limits, CORS) is wrapped around the app by the composition
root.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from latentserve.server import tracing
from latentserve.server.engine.service import GenerativeService
from latentserve.server.errors import RefusalBodies
from latentserve.server.frontends.rest import health, jobs, models, repository, sampling
from latentserve.server.frontends.rest.dependencies import client_deadline
from latentserve.server.frontends.rest.docs import add_offline_docs
from latentserve.server.frontends.rest.draining import RefuseWhileDraining
from latentserve.server.frontends.rest.errors import add_error_handlers, path_methods
from latentserve.server.frontends.rest.lean import Endpoint, serve_lean
from latentserve.server.frontends.rest.playground import add_playground
from latentserve.server.frontends.rest.schemas import ErrorBody
from latentserve.server.security.admin import AdminTokens
from latentserve.server.security.body_limit import BodyLimitMiddleware

from latentserve import __version__

ROUTERS = (health.router, models.router, sampling.router, jobs.router, repository.router)


_NO_TELEMETRY = {"tracing": False, "metrics": False, "logs": False}


def _is_probe(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in health.PROBES


def create_rest_app(
    service: GenerativeService,
    admins: AdminTokens | None = None,
    other_routers: Sequence[APIRouter] = (),
    refusal_bodies: RefusalBodies | None = None,
    lean_endpoints: Sequence[Endpoint] = (),
) -> FastAPI:
    """The REST app over ``service``; loading models is the composition root's job.
    ``other_routers`` are other frontends served on the same app and port (the OpenAI Images
    API): included here so their routes are named in metrics and ``Allow`` like ours;
    ``refusal_bodies`` gives the body limit's refusals their error shape; ``lean_endpoints``
    are their endpoints to serve as ours in ``sampling.LEAN_ENDPOINTS`` are (``lean.py``)."""
    app = FastAPI(
        title="latentserve",
        version=__version__,
        description="Sample, encode, reconstruct and score images with generative models.",
        responses={
            code: {"model": ErrorBody} for code in (400, 401, 403, 404, 413, 422, 429, 503, 504)
        },
        dependencies=[Depends(client_deadline)],
        docs_url=None,  # add_offline_docs serves /docs without a CDN
        redoc_url=None,
        # FastAPI's request spans (when tracing is on) continue the caller's traceparent.
        # With tracing off they are switched off outright: left on, FastAPI looks for a
        # configured provider on every request (6 % of the loop under REST load).
        telemetry={"exclude": _is_probe} if tracing.enabled() else _NO_TELEMETRY,
    )
    app.state.service = service
    app.state.admins = admins if admins is not None else AdminTokens()
    add_offline_docs(app)
    add_playground(app)
    routers = (*ROUTERS, *other_routers)
    for router in routers:
        app.include_router(router)
    max_bytes = service.settings.max_body_bytes
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_bytes, bodies=refusal_bodies)
    app.add_middleware(RefuseWhileDraining, service=service)
    add_error_handlers(app, service)
    routes = [*app.routes, *(route for router in routers for route in router.routes)]
    if not tracing.enabled():  # traced requests keep FastAPI's route and its server span
        serve_lean(app, routes, (*sampling.LEAN_ENDPOINTS, *lean_endpoints))
    # the routes' names are the REST requests' ``method`` labels
    service.metrics.allow_methods(name for route in routes if (name := getattr(route, "name", "")))
    app.state.path_methods = path_methods(routes)
    return app
