"""gRPC transport (grpc.aio): ``latentserve.v1.GenerativeService`` over the shared service.

Domain errors map to status codes in one table; invalid-argument errors also carry the
offending field in trailing metadata (``field``) and overload carries ``retry-after``.
Health checking and server reflection are served on the same port.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from latentserve.server.errors import (
    InvalidArgument,
    ModelNotFound,
    Overloaded,
    ServingError,
    Unavailable,
    Unsupported,
)
from latentserve.server.service import GenerativeService, ModelDescription
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc

PROTOCOL = "grpc"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GenerativeService"].full_name
GRPC_STATUS: dict[type[ServingError], grpc.StatusCode] = {
    ModelNotFound: grpc.StatusCode.NOT_FOUND,
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    Unsupported: grpc.StatusCode.UNIMPLEMENTED,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
}


async def _abort(
    service: GenerativeService,
    context: grpc.aio.ServicerContext,
    method: str,
    model: str,
    exc: ServingError,
) -> None:
    if not exc.recorded:
        service.record_rejection(model, method, PROTOCOL, exc.code)
    metadata: list[tuple[str, str]] = []
    if isinstance(exc, InvalidArgument):
        metadata.append(("field", exc.field))
    if isinstance(exc, Overloaded):
        metadata.append(("retry-after", str(exc.retry_after_s)))
    code = GRPC_STATUS.get(type(exc), grpc.StatusCode.INTERNAL)
    await context.abort(code, exc.message, trailing_metadata=tuple(metadata))


def _unary(method: str) -> Callable:
    """Map domain errors of one unary RPC to its gRPC status (the one place that does)."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        async def handler(self: GrpcGenerativeService, request: Any, context: Any) -> Any:
            try:
                return await fn(self, request, context)
            except ServingError as exc:
                await _abort(self._service, context, method, getattr(request, "model", ""), exc)

        return handler

    return wrap


def _info(d: ModelDescription) -> pb.ModelInfo:
    return pb.ModelInfo(
        name=d.name,
        version=d.version,
        family=d.family,
        description=d.description,
        capabilities=d.capabilities,
        image=pb.ImageInfo(height=d.height, width=d.width, channels=d.channels),
        latent_shape=d.latent_shape,
        backend=d.backend,
        execution_providers=d.execution_providers,
        max_batch_size=d.max_batch_size,
        max_n=d.max_n,
        versions=d.versions,
        likelihood=d.likelihood or "",
    )


def _latent(row: np.ndarray) -> pb.Latent:
    if row.dtype.kind in "iu":
        return pb.Latent(shape=row.shape, codes=row.ravel().tolist())
    return pb.Latent(shape=row.shape, values=row.ravel().tolist())


def _sample_args(request: pb.SampleRequest) -> tuple[int | None, float | None]:
    seed = request.seed if request.HasField("seed") else None
    temperature = request.temperature if request.HasField("temperature") else None
    return seed, temperature


class GrpcGenerativeService(pb_grpc.GenerativeServiceServicer):
    def __init__(self, service: GenerativeService) -> None:
        self._service = service

    @_unary("list_models")
    async def ListModels(
        self, request: pb.ListModelsRequest, context: Any
    ) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[_info(d) for d in self._service.list_models()])

    @_unary("get_model")
    async def GetModel(self, request: pb.GetModelRequest, context: Any) -> pb.ModelInfo:
        return _info(self._service.get_model(request.model))

    @_unary("sample")
    async def Sample(self, request: pb.SampleRequest, context: Any) -> pb.SampleResponse:
        seed, temperature = _sample_args(request)
        r = await self._service.sample(request.model, request.n, seed, temperature, PROTOCOL)
        return pb.SampleResponse(model=r.model, seed=r.seed, images=r.images)

    async def StreamSample(
        self, request: pb.SampleRequest, context: Any
    ) -> AsyncIterator[pb.SampleChunk]:
        seed, temperature = _sample_args(request)
        chunks = self._service.sample_stream(request.model, request.n, seed, temperature, PROTOCOL)
        try:
            async for c in chunks:
                yield pb.SampleChunk(model=c.model, seed=c.seed, offset=c.offset, images=c.images)
        except ServingError as exc:
            await _abort(self._service, context, "stream_sample", request.model, exc)
        finally:
            await chunks.aclose()

    @_unary("encode")
    async def Encode(self, request: pb.EncodeRequest, context: Any) -> pb.EncodeResponse:
        r = await self._service.encode(request.model, list(request.images), PROTOCOL)
        groups = [
            pb.LatentGroup(name=name, latents=[_latent(row) for row in array])
            for name, array in r.groups.items()
        ]
        single = groups[0].latents if len(groups) == 1 else []
        return pb.EncodeResponse(model=r.model, latents=single, groups=groups)

    @_unary("log_prob")
    async def LogProb(self, request: pb.LogProbRequest, context: Any) -> pb.LogProbResponse:
        samples = request.samples if request.HasField("samples") else None
        seed = request.seed if request.HasField("seed") else None
        r = await self._service.log_prob(
            request.model, list(request.images), samples, seed, PROTOCOL
        )
        response = pb.LogProbResponse(
            model=r.model, bits_per_dim=r.bits_per_dim, bound=r.bound, samples=r.samples
        )
        if r.seed is not None:
            response.seed = r.seed
        return response

    @_unary("reconstruct")
    async def Reconstruct(
        self, request: pb.ReconstructRequest, context: Any
    ) -> pb.ReconstructResponse:
        r = await self._service.reconstruct(request.model, list(request.images), PROTOCOL)
        return pb.ReconstructResponse(model=r.model, images=r.images)


def create_grpc_server(
    service: GenerativeService, health_servicer: health.aio.HealthServicer
) -> grpc.aio.Server:
    """A grpc.aio server with the generative service, health and reflection registered."""
    server = grpc.aio.server(
        options=[
            # Requests are bounded like REST bodies; responses (generated images) are not.
            ("grpc.max_receive_message_length", service.settings.max_body_bytes),
            ("grpc.so_reuseport", 0),  # a port already in use must fail loudly, not share
        ]
    )
    pb_grpc.add_GenerativeServiceServicer_to_server(GrpcGenerativeService(service), server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
    reflection.enable_server_reflection((*names, reflection.SERVICE_NAME), server)
    return server
