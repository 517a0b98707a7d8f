"""/docs that work offline: Swagger UI from the package's own files, under a strict CSP.

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
from starlette.exceptions import HTTPException
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
