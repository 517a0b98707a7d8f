"""gRPC client (grpcio): the fast face of the server, with server-streaming sampling."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import grpc
import numpy as np
from latentserve.clients.errors import (
    InvalidArgumentError,
    JobNotFoundError,
    LatentServeError,
    ModelNotFoundError,
    UnavailableError,
    from_code,
    from_grpc,
    from_status,
)
from latentserve.clients.images import ImageInput, from_png, to_png, to_pngs
from latentserve.clients.params import interpolate_params, sample_params
from latentserve.clients.results import (
    Accepted,
    ImageShape,
    InterpolationFrame,
    InterpolationResult,
    JobEvent,
    JobInfo,
    LogProbResult,
    ModelInfo,
    Preview,
    Progress,
    Queued,
    ReloadResult,
    Result,
    SampleChunk,
    SampleResult,
    single_group,
)
from latentserve.clients.retry import DEFAULT_RETRY, Retry
from latentserve.clients.tls import ClientTLS, bearer
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc
from PIL import Image

# Large n or large images exceed gRPC's 4 MiB default; the server enforces its own max_n.
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


SERVICE = pb.DESCRIPTOR.services_by_name["GenerativeService"].full_name


def channel_options(retry: Retry) -> list[tuple[str, object]]:
    """The channel's options: message limits, and gRPC's own retries as ``retry`` says."""
    config = retry.grpc_service_config(SERVICE)
    if config is None:
        return [*_CHANNEL_OPTIONS, ("grpc.enable_retries", 0)]
    return [*_CHANNEL_OPTIONS, ("grpc.enable_retries", 1), ("grpc.service_config", config)]


# Every sample parameter of any model kind is a SampleRequest field.
def _fields(message: type) -> frozenset[str]:
    return frozenset(message.DESCRIPTOR.fields_by_name) - {"model"}


class GrpcClient:
    """Synchronous client for a ``host:port`` target; reuse one instance (one channel)."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 60.0,
        token: str | None = None,
        tls: ClientTLS | None = None,
        retry: Retry = DEFAULT_RETRY,
    ) -> None:
        """``token`` is sent as ``authorization`` metadata; with ``tls`` the channel is
        secure (``ClientTLS()`` trusts the system's CAs); ``retry`` says how calls the
        server refused for now are tried again (``NO_RETRY``: never)."""
        self.target = target
        self.timeout = timeout
        self.retry = retry
        self._metadata = tuple(bearer(token).items())
        options = channel_options(retry)
        if tls is None:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            credentials = tls.grpc_credentials()
            self._channel = grpc.secure_channel(target, credentials, options=options)
        self._stub = pb_grpc.GenerativeServiceStub(self._channel)

    def list_models(self) -> list[ModelInfo]:
        """Every model the server serves (latest version of each)."""
        response = self._unary(self._stub.ListModels, pb.ListModelsRequest())
        return [model_info_from_proto(m) for m in response.models]

    def get_model(self, model: str) -> ModelInfo:
        """One model; ``model`` is ``name`` (latest version) or ``name@version``."""
        response = self._unary(self._stub.GetModel, pb.GetModelRequest(model=model))
        return model_info_from_proto(response)

    def sample(
        self, model: str, n: int = 1, seed: int | None = None, **params: Any
    ) -> SampleResult:
        """Draw ``n`` images; the returned seed reproduces them.

        ``params`` are the model kind's other sample parameters (``temperature``,
        ``steps``, ``sampler``, ...); one the model does not take raises
        :class:`InvalidArgumentError` naming it.
        """
        response = self._unary(self._stub.Sample, sample_request(model, n, seed, **params))
        return sample_from_proto(response)

    def stream_sample(
        self, model: str, n: int = 1, seed: int | None = None, **params: Any
    ) -> Iterator[SampleChunk]:
        """Yield images in chunks as the server produces them."""
        request = sample_request(model, n, seed, **params)
        for chunk in self._stream(self._stub.StreamSample, request, ModelNotFoundError):
            yield chunk_from_proto(chunk)

    def sample_many(
        self, requests: Iterable[Mapping[str, Any]]
    ) -> Iterator[tuple[int, SampleResult | LatentServeError]]:
        """Send many sample requests over one call and yield ``(index, outcome)`` for each
        as it finishes (not in order): ``index`` is its place in ``requests``, ``outcome``
        its :class:`SampleResult` or, for a request the server refused, the exception
        :meth:`sample` would raise (returned, not raised: the others go on).

        Each request is a mapping of :meth:`sample`'s arguments (``model``, ``n``,
        ``seed``, parameters). One call costs the server far less per request than one
        call each; ``requests`` is read as the server asks for more (it works on a bounded
        number at once), so it may be a long or endless generator.
        """
        messages = (many_request(i, r) for i, r in enumerate(requests))
        for answer in self._stream(self._stub.SampleMany, messages, ModelNotFoundError):
            yield many_from_proto(answer)

    def sample_events(
        self, model: str, n: int = 1, seed: int | None = None, **params: Any
    ) -> Iterator[JobEvent]:
        """Run a sample job and yield its events, ending with its :class:`Result`.

        A failed job raises its error. Closing the iterator early (``break``, ``close()``)
        cancels the call, and the server cancels the job; so does the client's timeout,
        which bounds the whole call.
        """
        request = sample_request(model, n, seed, **params)
        yield from self._job_events(self._stub.SampleEvents, request, ModelNotFoundError)

    def interpolate(
        self,
        model: str,
        seed_a: int | None = None,
        seed_b: int | None = None,
        frames: int | None = None,
        *,
        image_a: ImageInput | None = None,
        image_b: ImageInput | None = None,
        **params: Any,
    ) -> InterpolationResult:
        """Frames along a spherical interpolation between the latents of ``seed_a`` and
        ``seed_b`` (unset: the server draws them and returns them); the first and last
        frames are what :meth:`sample` gives for n = 1 with each seed. Models that encode
        take ``image_a`` and ``image_b`` instead. ``params`` are the model kind's own
        (``temperature``; diffusion ``steps``, ``class_label``, ``guidance_scale``).
        """
        stream = self.stream_interpolate(
            model, seed_a, seed_b, frames, image_a=image_a, image_b=image_b, **params
        )
        return interpolation_from_frames(list(stream))

    def stream_interpolate(
        self,
        model: str,
        seed_a: int | None = None,
        seed_b: int | None = None,
        frames: int | None = None,
        *,
        image_a: ImageInput | None = None,
        image_b: ImageInput | None = None,
        **params: Any,
    ) -> Iterator[InterpolationFrame]:
        """Yield each frame of :meth:`interpolate` as the server makes it."""
        request = interpolate_request(model, seed_a, seed_b, frames, image_a, image_b, params)
        for frame in self._stream(self._stub.Interpolate, request, ModelNotFoundError):
            yield frame_from_proto(frame)

    def text_to_image(
        self, model: str, prompt: str, n: int = 1, seed: int | None = None, **params: Any
    ) -> SampleResult:
        """Images for ``prompt`` from a text-to-image model. ``params``: ``negative_prompt``,
        ``steps``, ``sampler``, ``eta``, ``guidance_scale``, and for img2img ``image`` (PIL,
        numpy, PNG bytes or a path) with ``strength``."""
        request = text_to_image_request(model, prompt, n, seed, **params)
        return sample_from_proto(self._unary(self._stub.TextToImage, request))

    def text_to_image_events(
        self, model: str, prompt: str, n: int = 1, seed: int | None = None, **params: Any
    ) -> Iterator[JobEvent]:
        """Run a text-to-image job and yield its events, as :meth:`sample_events` does."""
        request = text_to_image_request(model, prompt, n, seed, **params)
        yield from self._job_events(self._stub.TextToImageEvents, request, ModelNotFoundError)

    def submit_job(
        self,
        model: str,
        n: int = 1,
        seed: int | None = None,
        *,
        method: str = "sample",
        **params: Any,
    ) -> JobInfo:
        """Admit a job (``sample`` or ``text_to_image``, whose ``prompt`` goes in
        ``params``) that outlives this call; follow it with :meth:`watch_job`."""
        job = job_request(model, n, seed, method, params)
        return job_info_from_proto(self._unary(self._stub.SubmitJob, job))

    def get_job(self, job_id: str) -> JobInfo:
        """The job's state now (a finished job stays readable for the server's job TTL)."""
        response = self._unary(self._stub.GetJob, pb.JobRef(job_id=job_id), JobNotFoundError)
        return job_info_from_proto(response)

    def cancel_job(self, job_id: str) -> JobInfo:
        """Ask the server to stop the job at its next step; its state says when it has."""
        response = self._unary(self._stub.CancelJob, pb.JobRef(job_id=job_id), JobNotFoundError)
        return job_info_from_proto(response)

    def watch_job(self, job_id: str) -> Iterator[JobEvent]:
        """The job's latest events so far, then live ones up to its :class:`Result`.

        A failed or cancelled job raises its error; closing this iterator leaves the job
        running.
        """
        request = pb.JobRef(job_id=job_id)
        yield from self._job_events(self._stub.WatchJob, request, JobNotFoundError)

    def encode(self, model: str, images: Iterable[ImageInput]) -> np.ndarray:
        """Latents of ``images`` for a model with one latent group, ``(len(images), ...)``."""
        return single_group(model, self.encode_groups(model, images))

    def encode_groups(self, model: str, images: Iterable[ImageInput]) -> dict[str, np.ndarray]:
        """Every latent group of ``images`` by name (NVAE groups, flow scales, VQ codes)."""
        request = pb.EncodeRequest(model=model, images=to_pngs(images))
        return groups_from_proto(self._unary(self._stub.Encode, request))

    def log_prob(
        self,
        model: str,
        images: Iterable[ImageInput],
        samples: int | None = None,
        seed: int | None = None,
    ) -> LogProbResult:
        """Bits/dim of each image; ``samples`` > 1 asks for an importance-weighted bound."""
        request = log_prob_request(model, images, samples, seed)
        return log_prob_from_proto(self._unary(self._stub.LogProb, request))

    def reconstruct(self, model: str, images: Iterable[ImageInput]) -> list[Image.Image]:
        """Encode then decode ``images`` (what the model keeps of them)."""
        request = pb.ReconstructRequest(model=model, images=to_pngs(images))
        response = self._unary(self._stub.Reconstruct, request)
        return [from_png(png) for png in response.images]

    def reload_repository(self, admin_token: str) -> ReloadResult:
        """Have the server serve what its model repository holds now (an admin call)."""
        metadata = (("authorization", f"Bearer {admin_token}"),)
        request = pb.ReloadRepositoryRequest()
        return reload_from_proto(
            self._unary(self._stub.ReloadRepository, request, metadata=metadata)
        )

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unary(
        self,
        method: Callable[..., Any],
        request: Any,
        not_found: type[LatentServeError] = ModelNotFoundError,
        metadata: tuple[tuple[str, str], ...] | None = None,
    ) -> Any:
        try:
            return method(request, timeout=self.timeout, metadata=metadata or self._metadata)
        except grpc.RpcError as exc:
            raise from_grpc(exc, not_found=not_found) from None

    def _stream(
        self, method: Callable[..., Any], request: Any, not_found: type[LatentServeError]
    ) -> Iterator[Any]:
        """The messages of a server-streaming call; closing this iterator cancels the call."""
        stream = method(request, timeout=self.timeout, metadata=self._metadata)
        try:
            yield from stream
        except grpc.RpcError as exc:
            raise from_grpc(exc, not_found=not_found) from None
        finally:
            stream.cancel()

    def _job_events(
        self, method: Callable[..., Any], request: Any, not_found: type[LatentServeError]
    ) -> Iterator[JobEvent]:
        for message in self._stream(method, request, not_found):
            event = event_from_proto(message)
            if event is not None:
                yield event
            if isinstance(event, Result):
                return
        raise UnavailableError(f"{self.target}: event stream ended before the job did")


def sample_request(
    model: str, n: int = 1, seed: int | None = None, **params: Any
) -> pb.SampleRequest:
    """Build a SampleRequest: each parameter sets the field of its name; unset ones (and
    ``None``) leave the server's defaults.

    The proto has a field for every parameter of every model kind, so a name it lacks, or
    a value its field cannot hold, is refused here as the server would refuse it.
    """
    return _request(pb.SampleRequest(model=model), sample_params(n, seed, params))


def many_request(index: int, request: Mapping[str, Any]) -> pb.SampleManyRequest:
    """One request of a SampleMany call: :meth:`GrpcClient.sample`'s arguments, by name."""
    given = dict(request)
    if "model" not in given:
        raise TypeError(f"sample request {index} names no model")
    return pb.SampleManyRequest(id=index, request=sample_request(**given))


def many_from_proto(
    answer: pb.SampleManyResponse,
) -> tuple[int, SampleResult | LatentServeError]:
    if answer.WhichOneof("result") == "error":
        e = answer.error
        return answer.id, from_status(e.code, e.message, e.field, e.retry_after_s)
    return answer.id, sample_from_proto(answer.response)


def text_to_image_request(
    model: str, prompt: str, n: int = 1, seed: int | None = None, **params: Any
) -> pb.TextToImageRequest:
    """Build a TextToImageRequest (an img2img ``image`` is sent as PNG bytes)."""
    if params.get("image") is not None:
        params["image"] = to_png(params["image"])
    given = sample_params(n, seed, params) | {"prompt": prompt}
    return _request(pb.TextToImageRequest(model=model), given)


def _request(request: Any, params: dict[str, Any]) -> Any:
    known = _fields(type(request))
    for name, value in params.items():
        if name not in known:
            raise InvalidArgumentError(
                f"{name}: not a parameter of {type(request).__name__} "
                f"(known: {', '.join(sorted(known))})",
                code="invalid_argument",
                field=name,
            )
        try:
            setattr(request, name, value)
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(
                f"{name}: {exc}", code="invalid_argument", field=name
            ) from None
    return request


def event_from_proto(event: pb.JobEvent) -> JobEvent | None:
    """One job event of a gRPC stream; an ``error`` event is raised as the SDK's exception,
    and an event this SDK does not know (a newer server's) is ``None``."""
    kind = event.WhichOneof("event")
    if kind == "accepted":
        a = event.accepted
        return Accepted(event.job_id, a.model, a.seed, json.loads(a.params_json))
    if kind == "queued":
        return Queued(event.queued.position)
    if kind == "progress":
        return Progress(event.progress.step, event.progress.steps)
    if kind == "preview":
        return Preview(event.preview.step, [from_png(png) for png in event.preview.images])
    if kind == "result":
        return Result(sample_from_proto(event.result))
    if kind == "error":
        raise from_code(event.error.code, event.error.message, event.error.field)
    return None


def job_info_from_proto(info: pb.JobInfo) -> JobInfo:
    error = info.error
    return JobInfo(
        job_id=info.job_id,
        model=info.model,
        method=info.method,
        state=info.state,
        step=info.step,
        steps=info.steps,
        params=json.loads(info.params_json or "{}"),
        created_at=info.created_at,
        position=info.position if info.HasField("position") else None,
        seed=info.seed if info.HasField("seed") else None,
        preview=[from_png(png) for png in info.preview],
        images=[from_png(png) for png in info.images],
        error=from_code(error.code, error.message, error.field) if info.HasField("error") else None,
    )


def model_info_from_proto(info: pb.ModelInfo) -> ModelInfo:
    return ModelInfo(
        name=info.name,
        version=info.version,
        family=info.family,
        description=info.description,
        capabilities=list(info.capabilities),
        image=ImageShape(info.image.height, info.image.width, info.image.channels),
        latent_shape=list(info.latent_shape),
        backend=info.backend,
        execution_providers=list(info.execution_providers),
        max_batch_size=info.max_batch_size,
        max_n=info.max_n,
        versions=list(info.versions),
        likelihood=info.likelihood or None,
        pipeline=info.pipeline,
        sample_parameters=list(info.sample_parameters),
        sample_defaults=dict(info.sample_defaults),
    )


def sample_from_proto(response: pb.SampleResponse) -> SampleResult:
    return SampleResult(
        model=response.model,
        seed=response.seed,
        images=[from_png(png) for png in response.images],
    )


def _latent(t: pb.Latent) -> np.ndarray:
    if len(t.codes):
        return np.asarray(t.codes, np.int64).reshape(t.shape)
    return np.asarray(t.values, np.float32).reshape(t.shape)


def job_request(
    model: str, n: int, seed: int | None, method: str, params: dict[str, Any]
) -> pb.JobRequest:
    """``SubmitJob``'s request: a ``text_to_image`` job's ``prompt`` comes in ``params``."""
    if method == "sample":
        return pb.JobRequest(sample=sample_request(model, n, seed, **params))
    if method == "text_to_image":
        prompt = params.pop("prompt", "")
        return pb.JobRequest(text_to_image=text_to_image_request(model, prompt, n, seed, **params))
    raise InvalidArgumentError(
        f"method: unknown job method {method!r}", code="invalid_argument", field="method"
    )


def interpolate_request(
    model: str,
    seed_a: int | None,
    seed_b: int | None,
    frames: int | None,
    image_a: ImageInput | None,
    image_b: ImageInput | None,
    params: dict[str, Any],
) -> pb.InterpolateRequest:
    given = interpolate_params(seed_a, seed_b, frames, image_a, image_b, params)
    return _request(pb.InterpolateRequest(model=model), given)


def frame_from_proto(frame: pb.InterpolateFrame) -> InterpolationFrame:
    return InterpolationFrame(
        model=frame.model,
        index=frame.index,
        image=from_png(frame.image),
        seed_a=frame.seed_a if frame.HasField("seed_a") else None,
        seed_b=frame.seed_b if frame.HasField("seed_b") else None,
    )


def interpolation_from_frames(frames: list[InterpolationFrame]) -> InterpolationResult:
    return InterpolationResult(
        model=frames[0].model,
        seed_a=frames[0].seed_a,
        seed_b=frames[0].seed_b,
        images=[frame.image for frame in frames],
    )


def chunk_from_proto(chunk: pb.SampleChunk) -> SampleChunk:
    return SampleChunk(
        model=chunk.model,
        seed=chunk.seed,
        offset=chunk.offset,
        images=[from_png(png) for png in chunk.images],
    )


def groups_from_proto(response: pb.EncodeResponse) -> dict[str, np.ndarray]:
    return {g.name: np.stack([_latent(t) for t in g.latents]) for g in response.groups}


def log_prob_request(
    model: str, images: Iterable[ImageInput], samples: int | None, seed: int | None
) -> pb.LogProbRequest:
    request = pb.LogProbRequest(model=model, images=to_pngs(images))
    if samples is not None:
        request.samples = samples
    if seed is not None:
        request.seed = seed
    return request


def log_prob_from_proto(r: pb.LogProbResponse) -> LogProbResult:
    return LogProbResult(
        model=r.model,
        bits_per_dim=list(r.bits_per_dim),
        bound=r.bound,
        samples=r.samples,
        seed=r.seed if r.HasField("seed") else None,
    )


def reload_from_proto(response: pb.ReloadRepositoryResponse) -> ReloadResult:
    refused = {item.model: item.error for item in response.refused}
    return ReloadResult(list(response.loaded), list(response.removed), refused)
