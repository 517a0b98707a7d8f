"""The REST frontend (FastAPI): JSON in, one engine call, JSON out."""

from latentserve.server.frontends.rest.app import create_rest_app

__all__ = ["create_rest_app"]
