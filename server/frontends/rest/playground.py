"""The playground: a page at ``/`` where a person picks a model, samples, watches a job's
previews, cancels it, and encodes or scores an image, through the public API only.

Plain HTML, CSS and JavaScript modules shipped in the package (no build step), served from
this server under a strict Content-Security-Policy: the page is same-origin with the API,
so it needs no CORS, and it loads no script, style or font from anywhere else.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from latentserve.server.errors import shown
from starlette.exceptions import HTTPException

PAGE_PATH = "/"
ASSETS_PATH = "/playground"
_FOLDER = Path(__file__).with_name("static") / "playground"
# Only these files are served: a name is a key, never a path joined onto the folder.
ASSETS: dict[str, str] = {
    "app.js": "text/javascript",
    "api.js": "text/javascript",
    "form.js": "text/javascript",
    "images.js": "text/javascript",
    "style.css": "text/css",
}
# Images are data: and blob: URLs the page makes from the API's PNGs; the rest is 'self'.
PLAYGROUND_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_HEADERS = {"Content-Security-Policy": PLAYGROUND_CSP, "X-Content-Type-Options": "nosniff"}


def add_playground(app: FastAPI) -> None:
    """Serve the playground page at ``/`` and its files under ``/playground/``."""

    @app.get(PAGE_PATH, include_in_schema=False)
    async def playground() -> FileResponse:
        return FileResponse(_FOLDER / "index.html", media_type="text/html", headers=_HEADERS)

    @app.get(f"{ASSETS_PATH}/{{name}}", include_in_schema=False)
    async def playground_asset(name: str) -> FileResponse:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise HTTPException(404, f"no playground file {shown(name)!r}")
        return FileResponse(_FOLDER / name, media_type=media_type, headers=_HEADERS)
