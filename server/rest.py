"""REST transport (FastAPI): JSON in, one service call, JSON out.

Errors leave as ``{"error": {"code", "message", "field"}}`` with a real status code, mapped
from the domain errors in one table. Responses skip FastAPI's re-validation (the service
already produced well-typed data) because per-request overhead is the throughput budget.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from latentserve.server import codecs
from latentserve.server.body_limit import BodyLimitMiddleware
from latentserve.server.errors import (
    InvalidArgument,
    ModelNotFound,
    Overloaded,
    ServingError,
    Unavailable,
    Unsupported,
)
from latentserve.server.service import GenerativeService, ModelDescription
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from latentserve import __version__

PROTOCOL = "rest"
HTTP_STATUS: dict[type[ServingError], int] = {
    ModelNotFound: 404,
    InvalidArgument: 422,
    Unsupported: 400,
    Overloaded: 429,
    Unavailable: 503,
}


class _Request(BaseModel):
    # Strict: "n": "3" is a client bug worth a 422, not something to coerce silently.
    model_config = ConfigDict(extra="forbid", strict=True)


class SampleRequest(_Request):
    n: int = Field(default=1, description="images to draw (1..max_n)")
    seed: int | None = Field(default=None, description="omit to let the server draw one")
    temperature: float | None = Field(default=None, description="prior scale, default 1.0")


class ImagesRequest(_Request):
    images: list[str] = Field(description="base64-encoded PNGs of the model's size")


class LogProbRequest(ImagesRequest):
    samples: int | None = Field(
        default=None, description="importance samples for sampled bounds (default 1)"
    )
    seed: int | None = Field(default=None, description="noise seed for sampled bounds")


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
    backend: str
    execution_providers: list[str]
    max_batch_size: int
    max_n: int
    versions: list[str]


class ModelList(BaseModel):
    models: list[ModelInfo]


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: dict | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "field": field}}
    return JSONResponse(body, status_code=status, headers=headers)


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


def _field(loc: tuple) -> str:
    """``("body", "images", 3)`` -> ``images[3]``: the name a client can act on."""
    parts = [p for p in loc if p not in ("body", "path", "query")] or ["body"]
    out = str(parts[0])
    for part in parts[1:]:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _decode_images(images: list[str]) -> list[bytes]:
    return [codecs.decode_base64(text, f"images[{i}]") for i, text in enumerate(images)]


def create_rest_app(service: GenerativeService) -> FastAPI:
    """The REST app over ``service``; loading models is the composition root's job."""
    app = FastAPI(
        title="latentserve",
        version=__version__,
        description="Sample, encode, reconstruct and score images with generative models.",
        responses={code: {"model": ErrorBody} for code in (400, 404, 413, 422, 429, 503)},
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=service.settings.max_body_bytes)
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

    @app.post("/v1/models/{model}/sample", response_model=SampleResponse, tags=["inference"])
    async def sample(model: str, body: SampleRequest) -> Response:
        result = await service.sample(model, body.n, body.seed, body.temperature, PROTOCOL)
        images = [codecs.encode_base64(p) for p in result.images]
        response = SampleResponse.model_construct(
            model=result.model, seed=result.seed, images=images
        )
        return _json(response)

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

    return app


def _add_error_handlers(app: FastAPI, service: GenerativeService) -> None:
    def record(request: Request, status: str) -> None:
        method = getattr(request.scope.get("route"), "name", "unknown")
        service.record_rejection(request.path_params.get("model", ""), method, PROTOCOL, status)

    @app.exception_handler(ServingError)
    async def serving_error(request: Request, exc: ServingError) -> JSONResponse:
        if not exc.recorded:
            record(request, exc.code)
        headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, Overloaded) else None
        status = HTTP_STATUS.get(type(exc), 500)
        return error_response(status, exc.code, exc.message, getattr(exc, "field", None), headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        field = "body" if first["type"] == "json_invalid" else _field(tuple(first["loc"]))
        message = _MESSAGES.get(first["type"], first["msg"])
        record(request, "invalid_argument")
        return error_response(422, "invalid_argument", f"{field}: {message}", field)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, "internal", "internal server error")
