"""The JSON schema of a generating method's parameters, for the OpenAPI document.

The REST routes take the parameters as a plain object because the model's kind decides
which fields apply; this states every kind's fields and bounds (from the pipelines'
pydantic models) so that clients and schema-driven tools see them.
"""

from __future__ import annotations

from typing import Any

from latentserve.server.pipelines import PIPELINES


def params_schema(method: str) -> dict[str, Any]:
    """``{"anyOf": [...]}``: one alternative per parameter model that serves ``method``."""
    models = {p.params_for[method] for p in PIPELINES.values() if method in p.params_for}
    return {"anyOf": [m.model_json_schema() for m in sorted(models, key=lambda m: m.__name__)]}


def params_body(method: str) -> dict[str, Any]:
    """A route's ``openapi_extra`` that documents ``method``'s parameters as its body."""
    return {"requestBody": {"content": {"application/json": {"schema": params_schema(method)}}}}
