"""REST transport (FastAPI): JSON in, one service call, JSON out.

Errors leave as ``{"error": {"code", "message", "field"}}`` with a real status code, mapped
from the domain errors in one table. Responses skip FastAPI's re-validation (the service
already produced well-typed data) because per-request overhead is the throughput budget.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from fastapi import Body, Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from latentserve.server import codecs, deadlines
from latentserve.server.body_limit import BodyLimitMiddleware
from latentserve.server.browser import add_offline_docs
from latentserve.server.errors import (
    DeadlineExceeded,
    InvalidArgument,
    ModelNotFound,
    Overloaded,
    PermissionDenied,
    ServingError,
    Unauthenticated,
    Unavailable,
    Unsupported,
    error_body,
)
from latentserve.server.jobs import Cancelled, Job, JobEvent, JobNotFound
from latentserve.server.params import MAX_SEED
from latentserve.server.params_schema import params_body
from latentserve.server.service import GenerativeService, ModelDescription
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from latentserve import __version__

PROTOCOL = "rest"
T = TypeVar("T")
HTTP_STATUS: dict[type[ServingError], int] = {
    ModelNotFound: 404,
    JobNotFound: 404,
    Cancelled: 409,
    InvalidArgument: 422,
    Unsupported: 400,
    Overloaded: 429,
    Unavailable: 503,
    DeadlineExceeded: 504,
    Unauthenticated: 401,
    PermissionDenied: 403,
}


class _Request(BaseModel):
    # Strict: "n": "3" is a client bug worth a 422, not something to coerce silently.
    model_config = ConfigDict(extra="forbid", strict=True)


SAMPLE_BODY = Body(
    default_factory=dict,
    description=(
        "Sample parameters of the model's kind (GET /v1/models/{model} lists them as "
        "`sample_parameters`): "
        "every model takes `n` and `seed`; VAE, NVAE, Glow and VQ models take `temperature`; "
        "diffusion models take `steps`, `sampler` (ddpm, ddim, dpmpp_2m, euler_a), `eta`, "
        "`preview_every`, and when class-conditional `class_label` and `guidance_scale`; GANs "
        "take `truncation`, style-based GANs also `mix_seed` and `mix_layer`. "
        "A field the model's kind does not have is refused with 422 naming it."
    ),
    examples=[{"n": 4, "seed": 0}, {"n": 4, "seed": 0, "steps": 20, "sampler": "dpmpp_2m"}],
)


TEXT_TO_IMAGE_BODY = Body(
    description=(
        "`prompt` (required), `negative_prompt`, `n`, `seed`, `steps`, `sampler`, `eta`, "
        "`guidance_scale`, `preview_every`; img2img: `image` (base64 PNG of the model's "
        "size) and `strength` in (0, 1]."
    ),
    examples=[{"prompt": "a handwritten 7", "n": 4, "seed": 0, "guidance_scale": 5.0}],
)


INTERPOLATE_BODY = Body(
    default_factory=dict,
    description=(
        "`seed_a`, `seed_b` (omit to let the server draw them), `frames` (2..64, default 8), "
        "and the model's own sample settings: `temperature` (VAE, NVAE, Glow), `steps`, "
        "`class_label`, `guidance_scale` (diffusion: frames are DDIM, eta 0). Models that "
        "encode take `image_a` and `image_b` (base64 PNGs) instead of seeds."
    ),
    examples=[{"seed_a": 1, "seed_b": 2, "frames": 8}],
)


class InterpolateResponse(BaseModel):
    model: str
    seed_a: int | None = Field(description="unset between images")
    seed_b: int | None
    images: list[str] = Field(description="base64 PNG frames, seed_a's image first")


class JobRequest(_Request):
    model: str = Field(description="model name, or name@version")
    method: str = Field(default="sample", description="sample or text_to_image")
    params: dict[str, Any] = Field(
        default_factory=dict, description="as for .../sample or .../text-to-image"
    )


class JobError(BaseModel):
    code: str
    message: str
    field: str | None = None


class JobInfo(BaseModel):
    job_id: str
    model: str
    method: str
    state: str = Field(description="queued, running, done, failed or cancelled")
    position: int | None = Field(description="place in the model's queue while queued")
    step: int
    steps: int
    params: dict[str, Any]
    created_at: float
    preview: list[str] | None = Field(description="latest preview PNGs (base64)")
    seed: int | None = None
    images: list[str] | None = Field(default=None, description="when done: base64 PNGs")
    error: JobError | None = None


class ImagesRequest(_Request):
    images: list[str] = Field(
        min_length=1, description="base64-encoded PNGs of the model's size: 1 to its max_n"
    )


class LogProbRequest(ImagesRequest):
    samples: int | None = Field(
        default=None, ge=1, description="importance samples for sampled bounds (default 1)"
    )
    seed: int | None = Field(
        default=None, ge=0, le=MAX_SEED, description="noise seed for sampled bounds"
    )


class LogProbResponse(BaseModel):
    model: str
    bits_per_dim: list[float]
    bound: str = Field(description='"exact", "elbo" or "importance_weighted"')
    samples: int
    seed: int | None


class SampleResponse(BaseModel):
    model: str
    seed: int
    images: list[str]


class EncodeResponse(BaseModel):
    model: str
    latents: list[Any] | None = Field(
        description="one array per image, for models with a single latent group"
    )
    groups: dict[str, list[Any]] = Field(description="every latent group: one array per image")


class ImagesResponse(BaseModel):
    model: str
    images: list[str]


class ImageInfo(BaseModel):
    height: int
    width: int
    channels: int


class ModelInfo(BaseModel):
    name: str
    version: str
    family: str
    description: str
    capabilities: list[str]
    image: ImageInfo
    latent_shape: list[int]
    likelihood: str | None
    pipeline: str = Field(
        description="how the model samples: latent_decoder, autoregressive_prior, diffusion"
    )
    sample_parameters: list[str] = Field(description="the fields POST .../sample accepts")
    backend: str
    execution_providers: list[str]
    max_batch_size: int
    max_n: int
    versions: list[str]


class ModelList(BaseModel):
    models: list[ModelInfo]


class RefusedVersion(BaseModel):
    model: str = Field(description="name@version")
    error: str = Field(description="why it is not served")


class ReloadResponse(BaseModel):
    loaded: list[str] = Field(description="name@version, served from now on")
    removed: list[str] = Field(description="no longer served; unloaded when their work ends")
    refused: list[RefusedVersion] = Field(description="on disk but not served")


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: dict | None = None
) -> Response:
    body = error_body(code, message, field)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


class _RefuseWhileDraining:
    """Once the server drains, new requests get 503 (retry elsewhere) while the accepted
    ones finish; health and metrics still answer, so ``/readyz`` tells balancers to go."""

    _ALWAYS = frozenset({"/healthz", "/readyz", "/metrics"})

    def __init__(self, app: ASGIApp, service: GenerativeService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.service.draining and scope["path"] not in self._ALWAYS:
            message = "the server is shutting down"
            refusal = error_response(503, "unavailable", message, headers={"Connection": "close"})
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _json(model: BaseModel) -> Response:
    return Response(model.model_dump_json(), media_type="application/json")


def _info(d: ModelDescription) -> ModelInfo:
    return ModelInfo(
        name=d.name,
        version=d.version,
        family=d.family,
        description=d.description,
        capabilities=d.capabilities,
        image=ImageInfo(height=d.height, width=d.width, channels=d.channels),
        latent_shape=d.latent_shape,
        likelihood=d.likelihood,
        pipeline=d.pipeline,
        sample_parameters=d.sample_parameters,
        backend=d.backend,
        execution_providers=d.execution_providers,
        max_batch_size=d.max_batch_size,
        max_n=d.max_n,
        versions=d.versions,
    )


_MESSAGES = {
    "json_invalid": "not valid JSON",
    "model_attributes_type": "expected a JSON object (send Content-Type: application/json)",
}
# Why FastAPI could not read a body it answers 400 for (the cause of its HTTPException).
_UNREADABLE = {
    UnicodeDecodeError: "not valid UTF-8",
    ValueError: "a JSON number has too many digits",
    RecursionError: "JSON nested too deeply",
}


def _field(loc: tuple) -> str:
    """``("body", "images", 3)`` -> ``images[3]``: the name a client can act on."""
    parts = [p for p in loc if p not in ("body", "path", "query")] or ["body"]
    out = str(parts[0])
    for part in parts[1:]:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _job_info(job: Job) -> JobInfo:
    result = job.result or {}
    error = job.error
    return JobInfo.model_construct(
        job_id=job.id,
        model=job.model,
        method=job.method,
        state=job.state.value,
        position=job.position,
        step=job.step,
        steps=job.steps,
        params=job.params,
        created_at=job.created,
        preview=_b64(job.preview) if job.preview else None,
        seed=result.get("seed", job.params.get("seed")),
        images=_b64(result["images"]) if "images" in result else None,
        error=(
            JobError(code=error.code, message=error.message, field=getattr(error, "field", None))
            if error is not None
            else None
        ),
    )


def _b64(pngs: list[bytes]) -> list[str]:
    return [codecs.encode_base64(p) for p in pngs]


def _sse(event: JobEvent) -> str:
    """One Server-Sent Event: its name and a JSON ``data:`` line (PNGs as base64)."""
    data = {k: _b64(v) if k == "images" else v for k, v in event.data.items()}
    return f"event: {event.kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _event_stream(job: Job, cancel_on_close: bool) -> AsyncIterator[str]:
    try:
        async for event in job.events():
            yield _sse(event)
    finally:
        if cancel_on_close:  # the client went away: free the compute at the next step
            job.cancel()


def _sse_response(events: AsyncIterator[str]) -> StreamingResponse:
    # Proxies must pass each event on as it comes, not buffer the stream.
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


def _wants_events(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``work``'s result; if the HTTP client disconnects first, cancel ``work`` (and so
    the job behind it) instead of computing for nobody."""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
    return await task


async def _collect(chunks: AsyncIterator[T]) -> list[T]:
    return [chunk async for chunk in chunks]


def _decode_images(images: list[str]) -> list[bytes]:
    return [codecs.decode_base64(text, f"images[{i}]") for i, text in enumerate(images)]


async def _client_deadline(
    timeout: str | None = Header(
        default=None,
        alias=deadlines.TIMEOUT_HEADER,
        description="seconds the client waits for the answer: work still queued when they "
        "have passed is dropped uncomputed, and the answer is 504 deadline_exceeded",
    ),
) -> None:
    if timeout is not None:
        deadlines.begin(deadlines.parse_timeout(timeout))


def create_rest_app(service: GenerativeService) -> FastAPI:
    """The REST app over ``service``; loading models is the composition root's job."""
    app = FastAPI(
        title="latentserve",
        version=__version__,
        description="Sample, encode, reconstruct and score images with generative models.",
        responses={
            code: {"model": ErrorBody} for code in (400, 401, 403, 404, 413, 422, 429, 503, 504)
        },
        dependencies=[Depends(_client_deadline)],
        docs_url=None,  # browser.add_offline_docs serves /docs without a CDN
        redoc_url=None,
    )
    add_offline_docs(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=service.settings.max_body_bytes)
    app.add_middleware(_RefuseWhileDraining, service=service)
    _add_error_handlers(app, service)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> Response:
        if not service.ready:
            return error_response(503, "unavailable", "not ready")
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["health"])
    async def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", response_model=ModelList, tags=["models"])
    async def list_models() -> Response:
        return _json(ModelList(models=[_info(d) for d in service.list_models()]))

    @app.get("/v1/models/{model}", response_model=ModelInfo, tags=["models"])
    async def get_model(model: str) -> Response:
        return _json(_info(service.get_model(model)))

    @app.post(
        "/v1/models/{model}/sample",
        response_model=SampleResponse,
        tags=["inference"],
        openapi_extra=params_body("sample"),
        description=(
            "Draw images. With `Accept: text/event-stream` the answer is Server-Sent Events "
            "(`accepted`, `queued`, `progress`, `preview`, `result`, `error`); closing the "
            "connection cancels the job."
        ),
    )
    async def sample(request: Request, model: str, body: dict[str, Any] = SAMPLE_BODY) -> Response:
        return await _generate(request, model, "sample", body)

    @app.post(
        "/v1/models/{model}/text-to-image",
        response_model=SampleResponse,
        tags=["inference"],
        openapi_extra=params_body("text_to_image"),
        description=(
            "Images for a prompt (text-to-image models). `image` (base64 PNG) + `strength` "
            "start from a picture (img2img). Server-Sent Events as for .../sample."
        ),
    )
    async def text_to_image(
        request: Request, model: str, body: dict[str, Any] = TEXT_TO_IMAGE_BODY
    ) -> Response:
        if isinstance(body.get("image"), str):
            body = body | {"image": codecs.decode_base64(body["image"], "image")}
        return await _generate(request, model, "text_to_image", body)

    async def _generate(request: Request, model: str, method: str, body: dict) -> Response:
        if _wants_events(request):
            job = await service.submit_job(model, method, body, PROTOCOL)
            return _sse_response(_event_stream(job, True))
        work = service.generate(model, method, body, PROTOCOL)
        result = await _unless_disconnected(request, work)
        response = SampleResponse.model_construct(
            model=result.model, seed=result.seed, images=_b64(result.images)
        )
        return _json(response)

    @app.post(
        "/v1/models/{model}/interpolate",
        response_model=InterpolateResponse,
        tags=["inference"],
        description=(
            "Frames along a spherical interpolation between the latents of `seed_a` and "
            "`seed_b` (or of two base64 PNGs `image_a`, `image_b`, for models that encode); "
            "the first and last frames are what .../sample gives for n = 1 with each seed."
        ),
    )
    async def interpolate(
        request: Request, model: str, body: dict[str, Any] = INTERPOLATE_BODY
    ) -> Response:
        for key in ("image_a", "image_b"):
            if isinstance(body.get(key), str):
                body = body | {key: codecs.decode_base64(body[key], key)}
        frames = await _unless_disconnected(
            request, _collect(service.interpolate(model, body, PROTOCOL))
        )
        first = frames[0]
        response = InterpolateResponse.model_construct(
            model=first.model,
            seed_a=first.seed_a,
            seed_b=first.seed_b,
            images=[codecs.encode_base64(png) for chunk in frames for png in chunk.images],
        )
        return _json(response)

    @app.post("/v1/jobs", response_model=JobInfo, status_code=202, tags=["jobs"])
    async def submit_job(body: JobRequest) -> Response:
        params = body.params
        if isinstance(params.get("image"), str):
            params = params | {"image": codecs.decode_base64(params["image"], "params.image")}
        job = await service.submit_job(body.model, body.method, params, PROTOCOL)
        info = _job_info(job)
        return Response(info.model_dump_json(), status_code=202, media_type="application/json")

    @app.get("/v1/jobs/{job_id}", response_model=JobInfo, tags=["jobs"])
    async def get_job(job_id: str) -> Response:
        return _json(_job_info(service.get_job(job_id)))

    @app.get("/v1/jobs/{job_id}/events", tags=["jobs"])
    async def job_events(job_id: str) -> Response:
        """Follow a job's events (SSE); closing this stream does not cancel the job."""
        job = service.get_job(job_id)
        return _sse_response(_event_stream(job, False))

    @app.delete("/v1/jobs/{job_id}", response_model=JobInfo, tags=["jobs"])
    async def cancel_job(job_id: str) -> Response:
        """Cancel a job: it stops at its next step boundary (its state says when)."""
        return _json(_job_info(service.cancel_job(job_id)))

    @app.post("/v1/models/{model}/encode", response_model=EncodeResponse, tags=["inference"])
    async def encode(model: str, body: ImagesRequest) -> Response:
        result = await service.encode(model, _decode_images(body.images), PROTOCOL)
        groups = {name: array.tolist() for name, array in result.groups.items()}
        latents = next(iter(groups.values())) if len(groups) == 1 else None
        response = EncodeResponse.model_construct(
            model=result.model, latents=latents, groups=groups
        )
        return _json(response)

    @app.post("/v1/models/{model}/log-prob", response_model=LogProbResponse, tags=["inference"])
    async def log_prob(model: str, body: LogProbRequest) -> Response:
        images = _decode_images(body.images)
        r = await service.log_prob(model, images, body.samples, body.seed, PROTOCOL)
        response = LogProbResponse.model_construct(
            model=r.model,
            bits_per_dim=r.bits_per_dim,
            bound=r.bound,
            samples=r.samples,
            seed=r.seed,
        )
        return _json(response)

    @app.post("/v1/models/{model}/reconstruct", response_model=ImagesResponse, tags=["inference"])
    async def reconstruct(model: str, body: ImagesRequest) -> Response:
        result = await service.reconstruct(model, _decode_images(body.images), PROTOCOL)
        images = [codecs.encode_base64(p) for p in result.images]
        return _json(ImagesResponse.model_construct(model=result.model, images=images))

    @app.post(
        "/v1/repository/reload",
        response_model=ReloadResponse,
        tags=["admin"],
        responses={code: {"model": ErrorBody} for code in (401, 403)},
        description=(
            "Serve what the model repository holds now: new versions are loaded and warmed "
            "up, then served (`name` moves to the newest); broken ones are refused while "
            "the old keep serving; removed ones are unloaded once their in-flight work "
            "ends. Needs `Authorization: Bearer <admin token>`."
        ),
    )
    async def reload_repository(request: Request) -> Response:
        result = await service.reload_repository(request.headers.get("authorization"), PROTOCOL)
        return _json(ReloadResponse.model_validate(dataclasses.asdict(result)))

    return app


def _add_error_handlers(app: FastAPI, service: GenerativeService) -> None:
    def record(request: Request, status: str) -> None:
        method = getattr(request.scope.get("route"), "name", "unknown")
        service.record_rejection(request.path_params.get("model", ""), method, PROTOCOL, status)

    @app.exception_handler(ServingError)
    async def serving_error(request: Request, exc: ServingError) -> Response:
        if not exc.recorded:
            record(request, exc.code)
        headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, Overloaded) else None
        if isinstance(exc, Unauthenticated):
            headers = {"WWW-Authenticate": "Bearer"}
        status = HTTP_STATUS.get(type(exc), 500)
        return error_response(status, exc.code, exc.message, getattr(exc, "field", None), headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0]
        field = "body" if first["type"] == "json_invalid" else _field(tuple(first["loc"]))
        message = _MESSAGES.get(first["type"], first["msg"])
        record(request, "invalid_argument")
        return error_response(422, "invalid_argument", f"{field}: {message}", field)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        if code is not None:
            return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)
        # Any other refusal by the framework means it could not read the body.
        reason = _UNREADABLE.get(type(exc.__cause__), "cannot be read as JSON")
        record(request, "invalid_argument")
        return error_response(422, "invalid_argument", f"body: {reason}", "body")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        return error_response(500, "internal", "internal server error")
