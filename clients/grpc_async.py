"""Asyncio gRPC client (grpc.aio): :class:`~latentserve.clients.grpc_client.GrpcClient`'s
methods as coroutines and async iterators, sharing its request building and parsing."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import grpc
import numpy as np
from latentserve.clients.errors import (
    JobNotFoundError,
    LatentServeError,
    ModelNotFoundError,
    UnavailableError,
    from_grpc,
    status_lost_to_a_write,
)
from latentserve.clients.grpc_client import (
    channel_options,
    chunk_from_proto,
    event_from_proto,
    frame_from_proto,
    groups_from_proto,
    interpolate_request,
    interpolation_from_frames,
    job_info_from_proto,
    job_request,
    log_prob_from_proto,
    log_prob_request,
    many_from_proto,
    many_request,
    model_info_from_proto,
    reload_from_proto,
    sample_from_proto,
    sample_request,
    text_to_image_request,
)
from latentserve.clients.images import ImageInput, from_png, to_pngs
from latentserve.clients.results import (
    InterpolationFrame,
    InterpolationResult,
    JobEvent,
    JobInfo,
    LogProbResult,
    ModelInfo,
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


class AsyncGrpcClient:
    """Asyncio client for a ``host:port`` target; each method is the awaitable form of
    :class:`~latentserve.clients.grpc_client.GrpcClient`'s of the same name. Create it
    inside the event loop that uses it."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 60.0,
        token: str | None = None,
        tls: ClientTLS | None = None,
        retry: Retry = DEFAULT_RETRY,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.retry = retry
        self._metadata = tuple(bearer(token).items())
        options = channel_options(retry)
        if tls is None:
            self._channel = grpc.aio.insecure_channel(target, options=options)
        else:
            credentials = tls.grpc_credentials()
            self._channel = grpc.aio.secure_channel(target, credentials, options=options)
        self._stub = pb_grpc.GenerativeServiceStub(self._channel)

    async def list_models(self) -> list[ModelInfo]:
        response = await self._unary(self._stub.ListModels, pb.ListModelsRequest())
        return [model_info_from_proto(m) for m in response.models]

    async def get_model(self, model: str) -> ModelInfo:
        response = await self._unary(self._stub.GetModel, pb.GetModelRequest(model=model))
        return model_info_from_proto(response)

    async def sample(
        self, model: str, n: int = 1, seed: int | None = None, **params: Any
    ) -> SampleResult:
        request = sample_request(model, n, seed, **params)
        return sample_from_proto(await self._unary(self._stub.Sample, request))

    async def stream_sample(
        self, model: str, n: int = 1, seed: int | None = None, **params: Any
    ) -> AsyncIterator[SampleChunk]:
        request = sample_request(model, n, seed, **params)
        async for chunk in self._stream(self._stub.StreamSample, request, ModelNotFoundError):
            yield chunk_from_proto(chunk)

    async def sample_many(
        self, requests: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]]
    ) -> AsyncIterator[tuple[int, SampleResult | LatentServeError]]:
        """:meth:`GrpcClient.sample_many <latentserve.clients.grpc_client.GrpcClient.sample_many>`;
        ``requests`` may also be an async iterable."""

        last: SampleResult | LatentServeError | None = None  # the last answer received

        async def messages() -> AsyncIterator[pb.SampleManyRequest]:
            if isinstance(requests, AsyncIterable):
                index = 0
                async for request in requests:
                    yield many_request(index, request)
                    index += 1
            else:
                for index, request in enumerate(requests):
                    yield many_request(index, request)

        def failure(exc: grpc.RpcError) -> LatentServeError:
            # A draining server refuses one request with UNAVAILABLE, then ends the call so.
            if type(last) is UnavailableError and status_lost_to_a_write(exc):
                return UnavailableError(last.message, code=last.code)
            return from_grpc(exc, not_found=ModelNotFoundError)

        call = self._stub.SampleMany(messages(), timeout=self.timeout, metadata=self._metadata)
        async for answer in self._answers(call, failure):
            index, last = many_from_proto(answer)
            yield index, last

    def sample_events(
        self, model: str, n: int = 1, seed: int | None = None, **params: Any
    ) -> AsyncIterator[JobEvent]:
        request = sample_request(model, n, seed, **params)
        return self._job_events(self._stub.SampleEvents, request, ModelNotFoundError)

    async def text_to_image(
        self, model: str, prompt: str, n: int = 1, seed: int | None = None, **params: Any
    ) -> SampleResult:
        request = text_to_image_request(model, prompt, n, seed, **params)
        return sample_from_proto(await self._unary(self._stub.TextToImage, request))

    def text_to_image_events(
        self, model: str, prompt: str, n: int = 1, seed: int | None = None, **params: Any
    ) -> AsyncIterator[JobEvent]:
        request = text_to_image_request(model, prompt, n, seed, **params)
        return self._job_events(self._stub.TextToImageEvents, request, ModelNotFoundError)

    async def interpolate(self, model: str, *args: Any, **kwargs: Any) -> InterpolationResult:
        frames = [frame async for frame in self.stream_interpolate(model, *args, **kwargs)]
        return interpolation_from_frames(frames)

    async def stream_interpolate(
        self,
        model: str,
        seed_a: int | None = None,
        seed_b: int | None = None,
        frames: int | None = None,
        *,
        image_a: ImageInput | None = None,
        image_b: ImageInput | None = None,
        **params: Any,
    ) -> AsyncIterator[InterpolationFrame]:
        request = interpolate_request(model, seed_a, seed_b, frames, image_a, image_b, params)
        async for frame in self._stream(self._stub.Interpolate, request, ModelNotFoundError):
            yield frame_from_proto(frame)

    async def submit_job(
        self,
        model: str,
        n: int = 1,
        seed: int | None = None,
        *,
        method: str = "sample",
        **params: Any,
    ) -> JobInfo:
        job = job_request(model, n, seed, method, params)
        return job_info_from_proto(await self._unary(self._stub.SubmitJob, job))

    async def get_job(self, job_id: str) -> JobInfo:
        ref = pb.JobRef(job_id=job_id)
        return job_info_from_proto(await self._unary(self._stub.GetJob, ref, JobNotFoundError))

    async def cancel_job(self, job_id: str) -> JobInfo:
        ref = pb.JobRef(job_id=job_id)
        response = await self._unary(self._stub.CancelJob, ref, JobNotFoundError)
        return job_info_from_proto(response)

    def watch_job(self, job_id: str) -> AsyncIterator[JobEvent]:
        return self._job_events(self._stub.WatchJob, pb.JobRef(job_id=job_id), JobNotFoundError)

    async def encode(self, model: str, images: Iterable[ImageInput]) -> np.ndarray:
        return single_group(model, await self.encode_groups(model, images))

    async def encode_groups(
        self, model: str, images: Iterable[ImageInput]
    ) -> dict[str, np.ndarray]:
        request = pb.EncodeRequest(model=model, images=to_pngs(images))
        return groups_from_proto(await self._unary(self._stub.Encode, request))

    async def log_prob(
        self,
        model: str,
        images: Iterable[ImageInput],
        samples: int | None = None,
        seed: int | None = None,
    ) -> LogProbResult:
        request = log_prob_request(model, images, samples, seed)
        return log_prob_from_proto(await self._unary(self._stub.LogProb, request))

    async def reconstruct(self, model: str, images: Iterable[ImageInput]) -> list[Image.Image]:
        request = pb.ReconstructRequest(model=model, images=to_pngs(images))
        response = await self._unary(self._stub.Reconstruct, request)
        return [from_png(png) for png in response.images]

    async def reload_repository(self, admin_token: str) -> ReloadResult:
        metadata = (("authorization", f"Bearer {admin_token}"),)
        request = pb.ReloadRepositoryRequest()
        response = await self._unary(self._stub.ReloadRepository, request, metadata=metadata)
        return reload_from_proto(response)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncGrpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _unary(
        self,
        method: Callable[..., Any],
        request: Any,
        not_found: type[LatentServeError] = ModelNotFoundError,
        metadata: tuple[tuple[str, str], ...] | None = None,
    ) -> Any:
        try:
            return await method(request, timeout=self.timeout, metadata=metadata or self._metadata)
        except grpc.RpcError as exc:
            raise from_grpc(exc, not_found=not_found) from None

    def _stream(
        self, method: Callable[..., Any], request: Any, not_found: type[LatentServeError]
    ) -> AsyncIterator[Any]:
        """The messages of a server-streaming call; closing this iterator cancels the call."""
        call = method(request, timeout=self.timeout, metadata=self._metadata)
        return self._answers(call, lambda exc: from_grpc(exc, not_found=not_found))

    @staticmethod
    async def _answers(
        call: Any, failure: Callable[[grpc.RpcError], LatentServeError]
    ) -> AsyncIterator[Any]:
        """A call's messages, its failure raised as ``failure`` says; closing this iterator
        cancels the call."""
        try:
            async for message in call:
                yield message
        except grpc.RpcError as exc:
            raise failure(exc) from None
        finally:
            call.cancel()

    async def _job_events(
        self, method: Callable[..., Any], request: Any, not_found: type[LatentServeError]
    ) -> AsyncIterator[JobEvent]:
        async for message in self._stream(method, request, not_found):
            event = event_from_proto(message)
            if event is not None:
                yield event
            if isinstance(event, Result):
                return
        raise UnavailableError(f"{self.target}: event stream ended before the job did")
