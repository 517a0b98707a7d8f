"""``/v1/models/{model}/…``: sample, text-to-image, interpolate, encode, log-prob and
reconstruct — each one engine call between decoding and encoding JSON."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from latentserve.server import codecs
from latentserve.server.frontends.disconnect import unless_disconnected
from latentserve.server.frontends.rest.dependencies import (
    PROTOCOL,
    Service,
    b64,
    collect,
    get_service,
    json_response,
)
from latentserve.server.frontends.rest.jobs import event_stream, sse_response
from latentserve.server.frontends.rest.schemas import (
    INTERPOLATE_BODY,
    SAMPLE_BODY,
    TEXT_TO_IMAGE_BODY,
    EncodeResponse,
    ImagesRequest,
    ImagesResponse,
    InterpolateResponse,
    LogProbRequest,
    LogProbResponse,
    SampleResponse,
)

router = APIRouter(tags=["inference"])


def _wants_events(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


def _decode_images(images: list[str]) -> list[bytes]:
    return [codecs.decode_base64(text, f"images[{i}]") for i, text in enumerate(images)]


async def _generate(request: Request, model: str, method: str, body: dict) -> Response:
    service = await get_service(request)
    if _wants_events(request):
        job = await service.submit_job(model, method, body, PROTOCOL)
        return sse_response(event_stream(job, True, service.settings.sse_keepalive_s))
    result = await unless_disconnected(request, service.generate(model, method, body, PROTOCOL))
    response = SampleResponse.model_construct(
        model=result.model, seed=result.seed, images=b64(result.images)
    )
    return json_response(response)


@router.post(
    "/v1/models/{model}/sample",
    response_model=SampleResponse,
    openapi_extra=SAMPLE_BODY.openapi(),
    description=(
        "Draw images. With `Accept: text/event-stream` the answer is Server-Sent Events "
        "(`accepted`, `queued`, `progress`, `preview`, `result`, `error`); closing the "
        "connection cancels the job."
    ),
)
async def sample(request: Request, model: str) -> Response:
    return await _generate(request, model, "sample", await SAMPLE_BODY.read(request))


@router.post(
    "/v1/models/{model}/text-to-image",
    response_model=SampleResponse,
    openapi_extra=TEXT_TO_IMAGE_BODY.openapi(),
    description=(
        "Images for a prompt (text-to-image models). `image` (base64 PNG) + `strength` "
        "start from a picture (img2img); a `mask` (base64 PNG, transparent where to repaint) "
        "with it inpaints. Server-Sent Events as for .../sample."
    ),
)
async def text_to_image(request: Request, model: str) -> Response:
    body = await TEXT_TO_IMAGE_BODY.read(request)
    for key in ("image", "mask"):
        if isinstance(body.get(key), str):
            body = body | {key: codecs.decode_base64(body[key], key)}
    return await _generate(request, model, "text_to_image", body)


@router.post(
    "/v1/models/{model}/interpolate",
    response_model=InterpolateResponse,
    openapi_extra=INTERPOLATE_BODY.openapi(),
    description=(
        "Frames along a spherical interpolation between the latents of `seed_a` and "
        "`seed_b` (or of two base64 PNGs `image_a`, `image_b`, for models that encode); "
        "the first and last frames are what .../sample gives for n = 1 with each seed."
    ),
)
async def interpolate(request: Request, model: str) -> Response:
    service = await get_service(request)
    body = await INTERPOLATE_BODY.read(request)
    for key in ("image_a", "image_b"):
        if isinstance(body.get(key), str):
            body = body | {key: codecs.decode_base64(body[key], key)}
    frames = await unless_disconnected(request, collect(service.interpolate(model, body, PROTOCOL)))
    first = frames[0]
    response = InterpolateResponse.model_construct(
        model=first.model,
        seed_a=first.seed_a,
        seed_b=first.seed_b,
        images=[codecs.encode_base64(png) for chunk in frames for png in chunk.images],
    )
    return json_response(response)


@router.post("/v1/models/{model}/encode", response_model=EncodeResponse)
async def encode(service: Service, model: str, body: ImagesRequest) -> Response:
    result = await service.encode(model, _decode_images(body.images), PROTOCOL)
    groups = {name: array.tolist() for name, array in result.groups.items()}
    latents = next(iter(groups.values())) if len(groups) == 1 else None
    return json_response(
        EncodeResponse.model_construct(model=result.model, latents=latents, groups=groups)
    )


@router.post("/v1/models/{model}/log-prob", response_model=LogProbResponse)
async def log_prob(service: Service, model: str, body: LogProbRequest) -> Response:
    images = _decode_images(body.images)
    r = await service.log_prob(model, images, body.samples, body.seed, PROTOCOL)
    response = LogProbResponse.model_construct(
        model=r.model, bits_per_dim=r.bits_per_dim, bound=r.bound, samples=r.samples, seed=r.seed
    )
    return json_response(response)


@router.post("/v1/models/{model}/reconstruct", response_model=ImagesResponse)
async def reconstruct(service: Service, model: str, body: ImagesRequest) -> Response:
    result = await service.reconstruct(model, _decode_images(body.images), PROTOCOL)
    return json_response(
        ImagesResponse.model_construct(model=result.model, images=b64(result.images))
    )


#: Endpoints that take only the request and the model: served without FastAPI's
#: per-request machinery (``lean.py``), being the routes that carry serving load.
LEAN_ENDPOINTS = (sample, text_to_image, interpolate)
