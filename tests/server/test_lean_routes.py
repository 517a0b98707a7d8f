"""The routes that carry serving load bypass FastAPI's per-request machinery
(``rest/lean.py``): only endpoints that need nothing FastAPI injects may, and they still get
the client's deadline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.testclient import TestClient
from latentserve.server.engine import deadlines
from latentserve.server.engine.service import GenerativeService
from latentserve.server.frontends.rest.dependencies import client_deadline
from latentserve.server.frontends.rest.errors import add_error_handlers
from latentserve.server.frontends.rest.lean import serve_lean
from latentserve.server.http_app import create_http_app
from latentserve.server.metrics import ServerMetrics
from latentserve.server.security.admin import AdminTokens
from latentserve.server.settings import Settings
from prometheus_client import CollectorRegistry
from starlette.routing import Route


async def token() -> str:
    return "t"


def _service(tmp_path: Path) -> GenerativeService:
    return GenerativeService(Settings(repository=tmp_path), ServerMetrics(CollectorRegistry()))


def test_the_inference_routes_are_dispatched_ahead_of_fastapis_router(tmp_path: Path) -> None:
    app = create_http_app(_service(tmp_path), AdminTokens())
    ahead = [(r.path, r.name) for r in app.router.routes[:5]]
    assert all(type(r) is Route for r in app.router.routes[:5])
    assert ahead == [
        ("/v1/models/{model}/sample", "sample"),
        ("/v1/models/{model}/text-to-image", "text_to_image"),
        ("/v1/models/{model}/interpolate", "interpolate"),
        ("/v2/models/{name}/infer", "_infer"),  # the Open Inference Protocol's
        ("/v2/models/{name}/versions/{version}/infer", "_infer"),
    ]


def _app(tmp_path: Path) -> FastAPI:
    app = FastAPI(dependencies=[Depends(client_deadline)])
    add_error_handlers(app, _service(tmp_path))
    return app


def test_a_lean_route_calls_the_endpoint_with_its_path_and_the_clients_deadline(
    tmp_path: Path,
) -> None:
    app = _app(tmp_path)

    @app.post("/things/{name}")
    async def thing(request: Request, name: str) -> Response:
        return JSONResponse({"name": name, "deadline": deadlines.current() is not None})

    serve_lean(app, app.routes, [thing])
    assert type(app.router.routes[0]) is Route
    client = TestClient(app)
    assert client.post("/things/a").json() == {"name": "a", "deadline": False}
    timed = client.post("/things/b", headers={deadlines.TIMEOUT_HEADER: "5"})
    assert timed.json() == {"name": "b", "deadline": True}
    refused = client.post("/things/c", headers={deadlines.TIMEOUT_HEADER: "never"})
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == deadlines.TIMEOUT_HEADER


def test_an_endpoint_that_needs_injection_is_refused(tmp_path: Path) -> None:
    app = _app(tmp_path)

    @app.post("/query")
    async def with_query(request: Request, n: Annotated[int, Query()] = 1) -> Response:
        return Response()

    @app.post("/dependency")
    async def with_dependency(request: Request, t: Annotated[str, Depends(token)]) -> Response:
        return Response()

    for endpoint, needs in ((with_query, "query_params"), (with_dependency, "dependencies")):
        with pytest.raises(TypeError, match=needs):
            serve_lean(app, app.routes, [endpoint])
    assert not any(type(r) is Route and r.name.startswith("with_") for r in app.router.routes)
