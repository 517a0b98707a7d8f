"""CORS for browsers calling the REST API from other origins (off unless configured)."""

from __future__ import annotations

from fastapi import FastAPI
from latentserve.server.settings import Settings
from starlette.middleware.cors import CORSMiddleware

# Response headers a browser script may read: the overload delay and the auth challenge.
EXPOSED_HEADERS = ("Retry-After", "WWW-Authenticate")


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
