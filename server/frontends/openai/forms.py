"""Reading ``POST /v1/images/edits``' multipart form (``python-multipart`` via Starlette):
text fields and at most two files (``image``, ``mask``), within the app's body limit."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from latentserve.server.errors import InvalidArgument
from starlette.datastructures import UploadFile

MAX_FIELDS = 32
MAX_FILES = 2

#: The OpenAPI description of the form (FastAPI cannot infer a form read by hand).
EDIT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image", "prompt", "model"],
                    "properties": {
                        "image": {"type": "string", "format": "binary"},
                        "mask": {
                            "type": "string",
                            "format": "binary",
                            "description": "PNG; its transparent pixels mark what to repaint",
                        },
                        "prompt": {"type": "string"},
                        "model": {"type": "string"},
                        "n": {"type": "integer"},
                        "size": {"type": "string"},
                        "response_format": {"type": "string", "enum": ["b64_json", "url"]},
                        "strength": {"type": "number"},
                    },
                }
            }
        },
    }
}


async def read_form(request: Request) -> tuple[dict[str, str], dict[str, bytes]]:
    """``(fields, files)``; a field's ``[]`` suffix (the SDK's for lists) is dropped."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidArgument("body", "send multipart/form-data: image, prompt, model, ...")
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    async with request.form(max_files=MAX_FILES, max_fields=MAX_FIELDS) as form:
        for key, value in form.multi_items():
            name = key.removesuffix("[]")
            if name in fields or name in files:
                raise InvalidArgument(name, "given more than once (one image per request)")
            if isinstance(value, UploadFile):
                files[name] = await value.read()
            else:
                fields[name] = value
    return fields, files
