"""REST ``/v2/...``: the Open Inference Protocol's HTTP/JSON binding over the engine.

Errors take the protocol's shape, ``{"error": "<message>"}``: a client's mistake is 400
(the message names the tensor or parameter), an unknown model 404. The repository
extension (index, load, unload) needs an admin token, as ``/v1/repository/reload`` does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from latentserve.server.engine.service import GenerativeService
from latentserve.server.errors import (
    DeadlineExceeded,
    InvalidArgument,
    ModelNotFound,
    Overloaded,
    PermissionDenied,
    ServingError,
    Unauthenticated,
    Unavailable,
    Unsupported,
)
from latentserve.server.frontends.disconnect import unless_disconnected
from latentserve.server.frontends.v2 import methods, wire
from latentserve.server.frontends.v2.server_info import server_metadata
from latentserve.server.security.admin import AdminTokens

PROTOCOL = "v2-rest"
HTTP_STATUS: dict[type[ServingError], int] = {
    InvalidArgument: 400,
    Unsupported: 400,
    ModelNotFound: 404,
    Unauthenticated: 401,
    PermissionDenied: 403,
    Overloaded: 429,
    Unavailable: 503,
    DeadlineExceeded: 504,
}

router = APIRouter(tags=["open inference protocol"], include_in_schema=False)


def _service(request: Request) -> GenerativeService:
    return request.app.state.service


def _admins(request: Request) -> AdminTokens:
    return request.app.state.admins


def _error(exc: ServingError) -> JSONResponse:
    headers = None
    if isinstance(exc, Overloaded):
        headers = {"Retry-After": str(exc.retry_after_s)}
    if isinstance(exc, Unauthenticated):
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse({"error": exc.message}, HTTP_STATUS.get(type(exc), 500), headers)


#: The names refusals are counted under (the requests' ``method`` label).
CALLS: set[str] = set()


def _v2(method: str) -> Callable:
    """Answer the route's domain errors in the protocol's shape, counted once."""
    CALLS.add(method)

    def wrap(route: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
        @wraps(route)
        async def handler(request: Request, **kwargs: Any) -> Response:
            try:
                return await route(request, **kwargs)
            except ServingError as exc:
                if not exc.recorded:
                    ref = _ref(kwargs.get("name", ""), kwargs.get("version"))
                    _service(request).record_rejection(ref, method, PROTOCOL, exc.code)
                return _error(exc)

        return handler

    return wrap


def _ref(name: str, version: str | None) -> str:
    return name if version is None else f"{name}@{version}"


@router.get("/v2")
@_v2("v2_server_metadata")
async def server_metadata_route(request: Request) -> Response:
    return JSONResponse(server_metadata())


@router.get("/v2/health/live")
async def live() -> Response:
    return Response(status_code=200)


@router.get("/v2/health/ready")
async def ready(request: Request) -> Response:
    if _service(request).ready:
        return Response(status_code=200)
    return JSONResponse({"error": "not ready"}, 503)


async def _metadata(request: Request, name: str, version: str | None = None) -> Response:
    model = _service(request).get_model(_ref(name, version))
    return JSONResponse(methods.metadata(model))


async def _model_ready(request: Request, name: str, version: str | None = None) -> Response:
    """200 when ready; otherwise the reason (an unknown model is simply not ready)."""
    service = _service(request)
    try:
        service.get_model(_ref(name, version))
    except (ModelNotFound, Unavailable) as exc:
        return JSONResponse({"error": exc.message}, 400)
    if not service.ready:
        return JSONResponse({"error": "the server is not ready"}, 400)
    return Response(status_code=200)


async def _config(request: Request, name: str, version: str | None = None) -> Response:
    """The subset of Triton's model configuration that its tools (perf_analyzer) read."""
    return JSONResponse(methods.model_config(_service(request).get_model(_ref(name, version))))


async def _infer(request: Request, name: str, version: str | None = None) -> Response:
    parsed = wire.parse_request(await request.body(), request.headers.get(wire.HEADER_LENGTH))
    work = methods.infer(
        _service(request),
        _ref(name, version),
        parsed.method,
        parsed.inputs,
        parsed.outputs,
        PROTOCOL,
    )
    outcome = await unless_disconnected(request, work)
    body, header_length = wire.encode_response(parsed, outcome)
    if header_length is None:
        return Response(body, media_type="application/json")
    return Response(
        body,
        media_type="application/octet-stream",
        headers={wire.HEADER_LENGTH: str(header_length)},
    )


def _latest(route: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """``route`` for a model's newest version: its path names no version, so neither does
    its signature (FastAPI would take ``version`` from the query string otherwise)."""

    async def latest(request: Request, name: str) -> Response:
        return await route(request, name)

    # not functools.wraps: FastAPI would read the wrapped signature, version and all
    latest.__name__, latest.__doc__ = route.__name__, route.__doc__
    return latest


#: Served without FastAPI's per-request work (``rest/lean.py``): the inference routes.
LEAN_ENDPOINTS: list[Callable[..., Awaitable[Response]]] = []

# Each model route also exists per version: /v2/models/{name}/versions/{version}/...
for suffix, http_method, route, label in (
    ("", "GET", _metadata, "v2_model_metadata"),
    ("/ready", "GET", _model_ready, "v2_model_ready"),
    ("/config", "GET", _config, "v2_model_config"),
    ("/infer", "POST", _infer, "v2_infer"),
):
    for endpoint, prefix in (
        (_latest(route), "/v2/models/{name}"),
        (route, "/v2/models/{name}/versions/{version}"),
    ):
        handler = _v2(label)(endpoint)
        router.add_api_route(prefix + suffix, handler, methods=[http_method])
        if route is _infer:
            LEAN_ENDPOINTS.append(handler)


async def _admin_body(request: Request) -> dict[str, Any]:
    """The optional JSON body of a repository call, after the caller proved to be an admin."""
    _admins(request).check(request.headers.get("authorization"))
    body = await request.body()
    if not body:
        return {}
    return wire.parse_object(body)


@router.post("/v2/repository/index")
@_v2("v2_repository_index")
async def repository_index(request: Request) -> Response:
    body = await _admin_body(request)
    only_ready = body.get("ready", False)
    if not isinstance(only_ready, bool):
        raise InvalidArgument("ready", "must be true or false")
    entries = [
        {"name": e.name, "version": e.version, "state": "READY" if e.ready else "UNAVAILABLE"}
        | ({"reason": e.reason} if e.reason else {})
        for e in _service(request).repository_index()
        if e.ready or not only_ready
    ]
    return JSONResponse(entries)


@router.post("/v2/repository/models/{name}/load")
@_v2("v2_repository_load")
async def repository_load(request: Request, name: str) -> Response:
    await _admin_body(request)
    await _service(request).load_model(name, PROTOCOL)
    return Response(status_code=200)


@router.post("/v2/repository/models/{name}/unload")
@_v2("v2_repository_unload")
async def repository_unload(request: Request, name: str) -> Response:
    await _admin_body(request)
    await _service(request).unload_model(name, PROTOCOL)
    return Response(status_code=200)
