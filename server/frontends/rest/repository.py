"""``/v1/repository``: changing what is served, for admins."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Request
from fastapi.responses import Response
from latentserve.server.frontends.rest.dependencies import PROTOCOL, Admins, Service, json_response
from latentserve.server.frontends.rest.schemas import ErrorBody, ReloadResponse

router = APIRouter(tags=["admin"])


@router.post(
    "/v1/repository/reload",
    response_model=ReloadResponse,
    responses={code: {"model": ErrorBody} for code in (401, 403)},
    description=(
        "Serve what the model repository holds now: new versions are loaded and warmed "
        "up, then served (`name` moves to the newest); broken ones are refused while "
        "the old keep serving; removed ones are unloaded once their in-flight work "
        "ends. Needs `Authorization: Bearer <admin token>`."
    ),
)
async def reload_repository(request: Request, service: Service, admins: Admins) -> Response:
    admins.check(request.headers.get("authorization"))
    result = await service.reload_repository(PROTOCOL)
    return json_response(ReloadResponse.model_validate(dataclasses.asdict(result)))
