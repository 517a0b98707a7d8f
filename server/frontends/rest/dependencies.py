"""What every REST route shares: the engine (one dependency) and the client's deadline
(cancelling work whose HTTP client went away is ``frontends/disconnect.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, TypeVar

from fastapi import Depends, Header, Request
from fastapi.responses import Response
from latentserve.server import codecs
from latentserve.server.engine import deadlines
from latentserve.server.engine.service import GenerativeService
from latentserve.server.security.admin import AdminTokens
from pydantic import BaseModel, WithJsonSchema

PROTOCOL = "rest"
T = TypeVar("T")


# Dependencies are coroutines: FastAPI runs a plain function in a worker thread, a thread
# hop per request that cost more than the rest of the route's dependencies together.
async def get_service(request: Request) -> GenerativeService:
    return request.app.state.service


async def get_admins(request: Request) -> AdminTokens:
    return request.app.state.admins


Service = Annotated[GenerativeService, Depends(get_service)]
Admins = Annotated[AdminTokens, Depends(get_admins)]


# What ``deadlines.parse_timeout`` accepts, declared as such: a header is never null, and a
# number out of range is refused (422) like any other invalid value.
_TIMEOUT_SCHEMA = {"type": "number", "exclusiveMinimum": 0, "maximum": deadlines.MAX_TIMEOUT_S}


async def client_deadline(
    timeout: Annotated[
        str | None,
        Header(
            alias=deadlines.TIMEOUT_HEADER,
            description="seconds the client waits for the answer: work still queued when "
            "they have passed is dropped uncomputed, and the answer is 504 deadline_exceeded",
        ),
        WithJsonSchema(_TIMEOUT_SCHEMA),
    ] = None,
) -> None:
    if timeout is not None:
        deadlines.begin(deadlines.parse_timeout(timeout))


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    # Skips FastAPI's re-validation: the engine already produced well-typed data, and
    # per-request overhead is the throughput budget.
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")


def b64(pngs: list[bytes]) -> list[str]:
    return [codecs.encode_base64(p) for p in pngs]


async def collect(chunks: AsyncIterator[T]) -> list[T]:
    return [chunk async for chunk in chunks]
