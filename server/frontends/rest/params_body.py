"""The generating routes' bodies: a JSON object of the parameters the model's kind takes.

The kind decides which fields apply, so the routes take a plain object, read by the route
itself rather than by FastAPI (``lean.py``: FastAPI's body and dependency handling were
about a third of the event loop's time under REST load). One ``ParamsBody`` says both how the
body is read and how the OpenAPI document shows it: every kind's fields and bounds, from
the pipelines' pydantic models, so that clients and schema-driven tools see them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from latentserve.server.errors import InvalidArgument
from latentserve.server.frontends.rest.errors import unreadable_reason
from latentserve.server.pipelines import PIPELINES
from starlette.requests import Request


def params_schema(method: str) -> dict[str, Any]:
    """``{"anyOf": [...]}``: one alternative per parameter model that serves ``method``."""
    models = {p.params_for[method] for p in PIPELINES.values() if method in p.params_for}
    return {"anyOf": [m.model_json_schema() for m in sorted(models, key=lambda m: m.__name__)]}


def is_json(content_type: str | None) -> bool:
    """``application/json`` or ``application/<anything>+json``, parameters aside."""
    media_type = (content_type or "").partition(";")[0].strip().lower()
    kind, _, subtype = media_type.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


@dataclass(frozen=True)
class ParamsBody:
    method: str
    description: str
    examples: list[dict[str, Any]] = field(default_factory=list)
    #: refuse an empty body (else it means "all defaults")
    required: bool = False

    def openapi(self) -> dict[str, Any]:
        """The route's ``openapi_extra``: this body as its ``requestBody``."""
        schema = {
            "type": "object",
            "additionalProperties": True,
            "title": "Body",
            "description": self.description,
            "examples": self.examples,
            **params_schema(self.method),
        }
        body: dict[str, Any] = {"content": {"application/json": {"schema": schema}}}
        return {"requestBody": body | ({"required": True} if self.required else {})}

    async def read(self, request: Request) -> dict[str, Any]:
        """The body's object, or ``InvalidArgument`` naming ``body``: JSON only when the
        request says it is JSON, an empty body is ``{}`` unless required."""
        try:
            raw = await request.body()
            value = json.loads(raw) if raw and is_json(request.headers.get("content-type")) else raw
        except Exception as exc:  # what json.loads and reading the body raise: all the client's
            raise InvalidArgument("body", unreadable_reason(exc)) from exc
        if value == b"":
            if self.required:
                raise InvalidArgument("body", "Field required")
            return {}
        if not isinstance(value, dict):
            raise InvalidArgument("body", "Input should be a valid dictionary")
        return value
