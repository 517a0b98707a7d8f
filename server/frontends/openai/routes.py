"""``POST /v1/images/generations`` and ``POST /v1/images/edits``: decode the OpenAI request,
make one ``text_to_image`` job, encode its images as that API answers them."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from latentserve.server import codecs
from latentserve.server.engine.service import GenerativeService, ModelDescription
from latentserve.server.errors import InvalidArgument, shown
from latentserve.server.frontends.disconnect import unless_disconnected
from latentserve.server.frontends.openai.errors import PROTOCOL, OpenAIRoute
from latentserve.server.frontends.openai.forms import EDIT_BODY, read_form
from latentserve.server.frontends.openai.schemas import EditRequest, GenerationRequest
from latentserve.server.frontends.openai.streaming import image_events, sse_response
from starlette.datastructures import URL

#: Every route of this API lies under it.
PATH_PREFIX = "/v1/images"
router = APIRouter(prefix=PATH_PREFIX, tags=["OpenAI Images API"], route_class=OpenAIRoute)
METHOD = "text_to_image"


async def _service(request: Request) -> GenerativeService:
    return request.app.state.service


Service = Annotated[GenerativeService, Depends(_service)]


@router.post("/generations")
async def generations(request: Request, service: Service, body: GenerationRequest) -> Response:
    """Images for a prompt, as the OpenAI Images API makes them."""
    return await _answer(request, service, body, body.engine_params(), "image_generation")


@router.post("/edits", openapi_extra=EDIT_BODY)
async def edits(request: Request, service: Service) -> Response:
    """Redraw an image after a prompt (img2img); with a mask, repaint only its transparent
    pixels and keep the rest (inpainting)."""
    fields, files = await read_form(request)
    body = EditRequest.model_validate(fields)
    image = files.pop("image", None)
    if image is None:
        raise InvalidArgument("image", "required: the PNG to edit, as a multipart file")
    params = body.engine_params() | {"image": image}
    if "mask" in files:
        params["mask"] = files.pop("mask")
    if files:
        raise InvalidArgument(next(iter(files)), "not a file this API takes (image, mask)")
    return await _answer(request, service, body, params, "image_edit")


async def _answer(
    request: Request,
    service: GenerativeService,
    body: GenerationRequest,
    params: dict[str, Any],
    events: str,
) -> Response:
    size = _size(body.size, service.get_model(body.model))
    if body.stream:
        if body.response_format == "url":
            raise InvalidArgument("response_format", "streamed images come as b64_json only")
        if body.partial_images:
            params["preview_every"] = 1  # image_events picks the evenly spaced ones
        job = await service.submit_job(body.model, METHOD, params, PROTOCOL)
        return sse_response(image_events(job, events, body.partial_images or 0, size))
    if body.response_format == "url":
        # a retained job: its images stay fetchable by URL until it expires
        job = await service.submit_job(body.model, METHOD, params, PROTOCOL)
        count = len((await unless_disconnected(request, job.wait()))["images"])
        data = [{"url": str(_image_url(request, job.id, i))} for i in range(count)]
    else:
        result = await unless_disconnected(
            request, service.generate(body.model, METHOD, params, PROTOCOL)
        )
        data = [{"b64_json": codecs.encode_base64(png)} for png in result.images]
    answer = {"created": int(time.time()), "data": data, "output_format": "png", "size": size}
    return JSONResponse(answer)


def _size(asked: str | None, model: ModelDescription) -> str:
    """The model's own ``WIDTHxHEIGHT``: the only size it makes."""
    own = f"{model.width}x{model.height}"
    if asked not in (None, "auto", own):
        raise InvalidArgument(
            "size", f"model {model.name} makes {own} images only, not {shown(asked)!r}"
        )
    return own


def _image_url(request: Request, job_id: str, index: int) -> URL:
    # the REST jobs route that serves a finished job's PNGs, found by its name
    return request.url_for("job_image", job_id=job_id, index=str(index))
