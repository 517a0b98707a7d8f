"""The routes that carry serving load, dispatched by Starlette instead of FastAPI.

Under REST load FastAPI 0.165's per-request work — matching included routers, solving
a route's dependencies, reading its body — was the largest part of the event loop's time,
about a third: about 400 µs per request through this app with the engine stubbed, against
about 130 µs with the route below (``bench/README.md``). An endpoint that takes
only the request and its path's parameters needs none of that work: it reads its own body
(``params_body.py``) and takes the engine from the app. Each such endpoint is *also* given a
plain Starlette route ahead of the router, calling the very same function; FastAPI's
route stays behind it for the OpenAPI document. The client's deadline, the app's one
dependency, is applied by the same function FastAPI calls.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from functools import wraps

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from latentserve.server.engine import deadlines
from latentserve.server.frontends.rest.dependencies import client_deadline
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

Endpoint = Callable[..., Awaitable[Response]]


def _injects_more(route: APIRoute) -> str | None:
    """What FastAPI would give ``route``'s endpoint beyond the request and path parameters
    and the client deadline; None when nothing."""
    needs = route.dependant
    if needs.request_param_name != "request":
        return "no `request` parameter"
    for kind in ("query_params", "header_params", "cookie_params", "body_params"):
        if getattr(needs, kind):
            return kind
    # a route declared on the app itself holds the app's dependency as its own
    if own := [d.call for d in needs.dependencies if d.call is not client_deadline]:
        return f"dependencies {own}"
    return None


def _dispatch(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    @wraps(endpoint)  # its name and docstring, for whoever lists the routes
    async def lean_endpoint(request: Request) -> Response:
        await client_deadline(request.headers.get(deadlines.TIMEOUT_HEADER))
        return await endpoint(request, **request.path_params)

    return lean_endpoint


def serve_lean(app: FastAPI, routes: Iterable[BaseRoute], endpoints: Iterable[Endpoint]) -> None:
    """Put a Starlette route ahead of the router for each route of ``routes`` whose endpoint
    is one of ``endpoints``; one that needs anything else FastAPI injects is refused."""
    chosen = set(endpoints)
    lean = [r for r in routes if isinstance(r, APIRoute) and r.endpoint in chosen]
    app_wide = [d.dependency for d in app.router.dependencies]
    if lean and app_wide != [client_deadline]:
        raise TypeError(f"no route can be served lean: the app's dependencies are {app_wide}")
    for route in lean:
        if (more := _injects_more(route)) is not None:
            raise TypeError(f"{route.path} cannot be served lean: its endpoint takes {more}")
    app.router.routes[:0] = [
        Route(r.path, _dispatch(r.endpoint), methods=sorted(r.methods), name=r.name) for r in lean
    ]
