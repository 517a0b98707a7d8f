"""What browsers need of the REST API: CORS, and /docs that work offline.

Swagger UI's files come with the ``swagger-ui-bundle-v2`` package and are served from this
server, and the page starts it from a script file rather than an inline script, so /docs
needs no CDN and runs under the strict Content-Security-Policy it is sent with.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse
from latentserve.server.errors import shown
from latentserve.server.settings import Settings
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from swagger_ui_bundle import swagger_ui_path

DOCS_PATH = "/docs"
ASSETS_PATH = f"{DOCS_PATH}/static"
_SWAGGER_UI = Path(str(swagger_ui_path))
ASSETS: dict[str, Path] = {
    "swagger-ui.css": _SWAGGER_UI / "swagger-ui.css",
    "swagger-ui-bundle.js": _SWAGGER_UI / "swagger-ui-bundle.js",
    "favicon-32x32.png": _SWAGGER_UI / "favicon-32x32.png",
    "latentserve-docs.js": Path(__file__).with_name("static") / "docs.js",
}
# Swagger UI sets inline styles and draws its icons as data: SVGs; nothing else is allowed.
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
# Response headers a browser script may read: the overload delay and the auth challenge.
EXPOSED_HEADERS = ("Retry-After", "WWW-Authenticate")


def _page(title: str, root: str, openapi_url: str) -> str:
    asset = f"{html.escape(root)}{ASSETS_PATH}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)} - API docs</title>
<link rel="stylesheet" href="{asset}/swagger-ui.css">
<link rel="icon" type="image/png" href="{asset}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{html.escape(root + openapi_url)}"></div>
<script src="{asset}/swagger-ui-bundle.js"></script>
<script src="{asset}/latentserve-docs.js"></script>
</body>
</html>
"""


def add_offline_docs(app: FastAPI) -> None:
    """Serve Swagger UI at /docs from the package's own files (create the app with
    ``docs_url=None`` so FastAPI's CDN-based page is not registered too)."""

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        page = _page(app.title, request.scope.get("root_path", ""), app.openapi_url or "")
        return HTMLResponse(page, headers={"Content-Security-Policy": DOCS_CSP})

    @app.get(f"{ASSETS_PATH}/{{name}}", include_in_schema=False)
    async def docs_asset(name: str) -> FileResponse:
        path = ASSETS.get(name)
        if path is None:
            raise HTTPException(404, f"no docs asset {shown(name)!r}")
        return FileResponse(path, headers={"Cache-Control": "public, max-age=86400"})


def allow_cross_origin(app: FastAPI, settings: Settings) -> None:
    """CORS for the origins in ``cors_allow_origins`` (none: off). Add it last, outermost,
    so preflight requests are answered before authentication asks for a token."""
    if not settings.cors_allow_origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_allow_origins),
        allow_methods=list(settings.cors_allow_methods),
        allow_headers=list(settings.cors_allow_headers),
        expose_headers=list(EXPOSED_HEADERS),
        max_age=600,
    )
