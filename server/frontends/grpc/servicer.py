"""gRPC frontend (grpc.aio): ``latentserve.v1.GenerativeService`` over the engine.

Domain errors map to status codes in one table; invalid-argument errors also carry the
offending field in trailing metadata (``field``) and overload carries ``retry-after``.
Health checking and server reflection are served on the same port.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from latentserve.server.engine import deadlines
from latentserve.server.engine.jobs import JobEvent, JobView
from latentserve.server.engine.service import GenerativeService, ModelDescription
from latentserve.server.errors import (
    InvalidArgument,
    Overloaded,
    ServingError,
    Unavailable,
)
from latentserve.server.frontends.grpc.many import answer_as_done
from latentserve.server.frontends.status import error_metadata, grpc_status
from latentserve.server.security.admin import AdminTokens
from latentserve.server.security.grpc_guard import CallGuard, method_name
from latentserve.server.security.grpc_limits import (
    ConcurrencyLimit,
    Refuse,
    core_backlog_options,
)
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc

PROTOCOL = "grpc"
SHUTTING_DOWN = "server is shutting down: requests of this call not answered were not run"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GenerativeService"].full_name


async def _abort(
    service: GenerativeService,
    context: grpc.aio.ServicerContext,
    method: str,
    model: str,
    exc: ServingError,
) -> None:
    if not exc.recorded:
        service.record_rejection(model, method, PROTOCOL, exc.code)
    await context.abort(grpc_status(exc), exc.message, trailing_metadata=error_metadata(exc))


async def _refuse_overloaded(
    service: GenerativeService,
    context: grpc.aio.ServicerContext,
    method: str,
    request: Any,
    exc: ServingError,
) -> None:
    await _abort(service, context, method, getattr(request, "model", ""), exc)


def _unary(method: str) -> Callable:
    """Map domain errors of one unary RPC to its gRPC status (the one place that does)."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        async def handler(self: GrpcGenerativeService, request: Any, context: Any) -> Any:
            deadlines.begin(context.time_remaining())
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
        pipeline=d.pipeline,
        sample_parameters=d.sample_parameters,
        sample_defaults=d.sample_defaults,
    )


def _latent(row: np.ndarray) -> pb.Latent:
    if row.dtype.kind in "iu":
        return pb.Latent(shape=row.shape, codes=row.ravel().tolist())
    return pb.Latent(shape=row.shape, values=row.ravel().tolist())


def _params(
    request: pb.SampleRequest | pb.TextToImageRequest | pb.InterpolateRequest,
) -> dict[str, Any]:
    """The parameters the client set, by name: the model's kind decides what they mean.

    A proto ``float`` is 32-bit: it is read back as the shortest decimal that names it, so
    ``strength = 0.3`` means what 0.3 means over JSON (not 0.30000001, which would run
    ``ceil(0.30000001 * 10) = 4`` img2img steps instead of 3).
    """
    return {
        f.name: float(str(np.float32(value))) if f.type == f.TYPE_FLOAT else value
        for f, value in request.ListFields()
        if f.name != "model"
    }


def _request_error(exc: ServingError) -> pb.RequestError:
    """A refused request inside a call that goes on: the status and the details a unary
    call would carry in its trailing metadata."""
    return pb.RequestError(
        code=grpc_status(exc).value[0],
        message=exc.message,
        field=exc.field if isinstance(exc, InvalidArgument) else "",
        retry_after_s=exc.retry_after_s if isinstance(exc, Overloaded) else 0,
    )


def _job_request(request: pb.JobRequest) -> tuple[str, str, dict[str, Any]]:
    """(model, method, parameters) of a SubmitJob request."""
    method = request.WhichOneof("method")
    if method is None:
        raise InvalidArgument("method", "set sample or text_to_image")
    inner = getattr(request, method)
    return inner.model, method, _params(inner)


def _event(job_id: str, event: JobEvent) -> pb.JobEvent:
    return pb.JobEvent(job_id=job_id, event_id=event.id, **{event.kind: _event_body(event)})


def _event_body(event: JobEvent) -> Any:
    """The message in ``JobEvent``'s oneof field named after the event's kind."""
    d = event.data
    if event.kind == "accepted":
        params = {k: v for k, v in d.items() if k not in ("job_id", "model")}
        return pb.JobAccepted(model=d["model"], seed=d["seed"], params_json=json.dumps(params))
    if event.kind == "queued":
        return pb.JobQueued(position=d["position"])
    if event.kind == "progress":
        return pb.JobProgress(step=d["step"], steps=d["steps"])
    if event.kind == "preview":
        return pb.JobPreview(step=d["step"], images=d["images"])
    if event.kind == "result":
        return pb.SampleResponse(model=d["model"], seed=d["seed"], images=d["images"])
    return pb.JobError(code=d["code"], message=d["message"], field=d.get("field") or "")


def _job_info(job: JobView) -> pb.JobInfo:
    result = job.result or {}
    info = pb.JobInfo(
        job_id=job.id,
        model=job.model,
        method=job.method,
        state=job.state.value,
        step=job.step,
        steps=job.steps,
        params_json=json.dumps(job.params),
        created_at=job.created,
        preview=job.preview or [],
        images=result.get("images", []),
    )
    if job.position is not None:
        info.position = job.position
    if "seed" in job.params:
        info.seed = job.params["seed"]
    if job.error is not None:
        info.error.CopyFrom(
            pb.JobError(
                code=job.error.code,
                message=job.error.message,
                field=getattr(job.error, "field", None) or "",
            )
        )
    return info


class GrpcGenerativeService(pb_grpc.GenerativeServiceServicer):
    def __init__(self, service: GenerativeService, admins: AdminTokens) -> None:
        self._service = service
        self._admins = admins

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
        r = await self._service.sample(request.model, _params(request), PROTOCOL)
        return pb.SampleResponse(model=r.model, seed=r.seed, images=r.images)

    async def SampleMany(
        self, requests: AsyncIterator[pb.SampleManyRequest], context: Any
    ) -> AsyncIterator[pb.SampleManyResponse]:
        deadlines.begin(context.time_remaining())  # the call's deadline binds each request
        limit = self._service.settings.max_stream_requests_in_flight
        refused: list[pb.SampleManyRequest] = []
        accepted = self._until_draining(requests, refused)
        async for answer in answer_as_done(accepted, self._sample_one, limit):
            yield answer
        if refused:  # the server began to drain: the requests taken are answered, no more
            unavailable = _request_error(Unavailable(SHUTTING_DOWN))
            yield pb.SampleManyResponse(id=refused[0].id, error=unavailable)
            await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)

    async def _until_draining(
        self, requests: AsyncIterator[pb.SampleManyRequest], refused: list[pb.SampleManyRequest]
    ) -> AsyncIterator[pb.SampleManyRequest]:
        """A call's requests until the server starts to drain; the first one read after
        that goes into ``refused`` and ends them (like a call the drain refuses, it was
        never accepted, so it is not counted as a request)."""
        async for item in requests:
            if self._service.draining:
                refused.append(item)
                return
            yield item

    async def _sample_one(self, item: pb.SampleManyRequest) -> pb.SampleManyResponse:
        """One request of a SampleMany call: its images, or why not (never an exception,
        which would end the other requests' call)."""
        request = item.request
        try:
            r = await self._service.sample(request.model, _params(request), PROTOCOL)
        except ServingError as exc:
            if not exc.recorded:
                self._service.record_rejection(request.model, "sample", PROTOCOL, exc.code)
            return pb.SampleManyResponse(id=item.id, error=_request_error(exc))
        response = pb.SampleResponse(model=r.model, seed=r.seed, images=r.images)
        return pb.SampleManyResponse(id=item.id, response=response)

    async def SampleEvents(
        self, request: pb.SampleRequest, context: Any
    ) -> AsyncIterator[pb.JobEvent]:
        async for event in self._events(request, "sample", context):
            yield event

    @_unary("text_to_image")
    async def TextToImage(self, request: pb.TextToImageRequest, context: Any) -> pb.SampleResponse:
        r = await self._service.generate(request.model, "text_to_image", _params(request), PROTOCOL)
        return pb.SampleResponse(model=r.model, seed=r.seed, images=r.images)

    async def TextToImageEvents(
        self, request: pb.TextToImageRequest, context: Any
    ) -> AsyncIterator[pb.JobEvent]:
        async for event in self._events(request, "text_to_image", context):
            yield event

    async def _events(
        self, request: pb.SampleRequest | pb.TextToImageRequest, method: str, context: Any
    ) -> AsyncIterator[pb.JobEvent]:
        """A job's events; the call ending (cancelled, deadline) cancels the job."""
        deadlines.begin(context.time_remaining())
        try:
            job = await self._service.submit_job(request.model, method, _params(request), PROTOCOL)
        except ServingError as exc:
            await _abort(self._service, context, f"submit_{method}", request.model, exc)
            return
        try:
            async for event in job.events():
                yield _event(job.id, event)
        finally:
            job.cancel()

    @_unary("submit_job")
    async def SubmitJob(self, request: pb.JobRequest, context: Any) -> pb.JobInfo:
        model, method, params = _job_request(request)
        return _job_info(await self._service.submit_job(model, method, params, PROTOCOL))

    @_unary("get_job")
    async def GetJob(self, request: pb.JobRef, context: Any) -> pb.JobInfo:
        return _job_info(await self._service.get_job(request.job_id))

    @_unary("cancel_job")
    async def CancelJob(self, request: pb.JobRef, context: Any) -> pb.JobInfo:
        return _job_info(await self._service.cancel_job(request.job_id))

    async def WatchJob(self, request: pb.JobRef, context: Any) -> AsyncIterator[pb.JobEvent]:
        try:
            job = await self._service.get_job(request.job_id)
        except ServingError as exc:
            await _abort(self._service, context, "watch_job", "", exc)
            return
        async for event in job.events(after=request.after_event_id):
            yield _event(job.id, event)

    async def StreamSample(
        self, request: pb.SampleRequest, context: Any
    ) -> AsyncIterator[pb.SampleChunk]:
        deadlines.begin(context.time_remaining())
        chunks = self._service.sample_stream(request.model, _params(request), PROTOCOL)
        try:
            async for c in chunks:
                yield pb.SampleChunk(model=c.model, seed=c.seed, offset=c.offset, images=c.images)
        except ServingError as exc:
            await _abort(self._service, context, "stream_sample", request.model, exc)
        finally:
            await chunks.aclose()

    async def Interpolate(
        self, request: pb.InterpolateRequest, context: Any
    ) -> AsyncIterator[pb.InterpolateFrame]:
        chunks = self._service.interpolate(request.model, _params(request), PROTOCOL)
        try:
            async for c in chunks:
                for i, png in enumerate(c.images):
                    frame = pb.InterpolateFrame(model=c.model, index=c.offset + i, image=png)
                    if c.seed_a is not None and c.seed_b is not None:
                        frame.seed_a, frame.seed_b = c.seed_a, c.seed_b
                    yield frame
        except ServingError as exc:
            await _abort(self._service, context, "interpolate", request.model, exc)
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

    @_unary("reload_repository")
    async def ReloadRepository(
        self, request: pb.ReloadRepositoryRequest, context: Any
    ) -> pb.ReloadRepositoryResponse:
        self._admins.check(dict(context.invocation_metadata() or ()).get("authorization"))
        r = await self._service.reload_repository(PROTOCOL)
        refused = [pb.RefusedVersion(model=v.model, error=v.error) for v in r.refused]
        return pb.ReloadRepositoryResponse(loaded=r.loaded, removed=r.removed, refused=refused)


def create_grpc_server(
    service: GenerativeService,
    health_servicer: health.aio.HealthServicer,
    interceptors: tuple[grpc.aio.ServerInterceptor, ...] = (),
    admins: AdminTokens | None = None,
    limited: Mapping[str, Refuse] | None = None,
    unlimited: Iterable[str] = (),
) -> grpc.aio.Server:
    """A grpc.aio server with the generative service, health and reflection registered.

    ``limited``: other services to be added to it that share the generative service's cap
    on calls in progress, each with its refusal; ``unlimited``: their methods that are not
    (probes)."""

    def undecodable(method: str) -> None:
        service.record_rejection("", method, PROTOCOL, InvalidArgument.code)

    rpcs = pb.DESCRIPTOR.services_by_name["GenerativeService"].methods
    service.metrics.allow_methods(method_name(rpc.name) for rpc in rpcs)
    refusals = {SERVICE_NAME: functools.partial(_refuse_overloaded, service), **(limited or {})}
    overload = ConcurrencyLimit(refusals, service.settings.max_grpc_concurrent_rpcs, unlimited)
    server = grpc.aio.server(
        # Authentication first: a refused call's request is never decoded.
        interceptors=[*interceptors, overload, CallGuard(undecodable)],
        options=[
            # Requests are bounded like REST bodies; responses (generated images) are not.
            ("grpc.max_receive_message_length", service.settings.max_body_bytes),
            # A port already in use must fail loudly, not be shared: only the workers of
            # one server (workers > 1) share theirs.
            ("grpc.so_reuseport", int(service.settings.workers > 1)),
            *core_backlog_options(service.settings.grpc_max_pending_calls),
        ],
    )
    servicer = GrpcGenerativeService(service, admins if admins is not None else AdminTokens())
    pb_grpc.add_GenerativeServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
    reflection.enable_server_reflection((*names, reflection.SERVICE_NAME), server)
    return server
