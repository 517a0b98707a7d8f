"""The OpenAI Images API (``/v1/images/generations``, ``/v1/images/edits``) over the engine,
for every model that can do ``text_to_image``, so applications written against the
``openai`` SDK need only a ``base_url``."""

from latentserve.server.frontends.openai.errors import refusal_json
from latentserve.server.frontends.openai.routes import PATH_PREFIX, router

__all__ = ["PATH_PREFIX", "refusal_json", "router"]
