"""gRPC client (grpcio): the fast face of the server, with server-streaming sampling."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import grpc
import numpy as np
from latentserve.clients.errors import from_grpc
from latentserve.clients.images import ImageInput, from_png, to_pngs
from latentserve.clients.results import (
    ImageShape,
    LogProbResult,
    ModelInfo,
    SampleChunk,
    SampleResult,
    single_group,
)
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc
from PIL import Image

# Large n or large images exceed gRPC's 4 MiB default; the server enforces its own max_n.
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


class GrpcClient:
    """Synchronous client for a ``host:port`` target; reuse one instance (one channel)."""

    def __init__(self, target: str, *, timeout: float = 60.0) -> None:
        self.target = target
        self.timeout = timeout
        self._channel = grpc.insecure_channel(target, options=_CHANNEL_OPTIONS)
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
        self, model: str, n: int, seed: int | None = None, temperature: float = 1.0
    ) -> SampleResult:
        """Draw ``n`` images; the returned seed reproduces them."""
        response = self._unary(self._stub.Sample, sample_request(model, n, seed, temperature))
        return SampleResult(
            model=response.model,
            seed=response.seed,
            images=[from_png(png) for png in response.images],
        )

    def stream_sample(
        self, model: str, n: int, seed: int | None = None, temperature: float = 1.0
    ) -> Iterator[SampleChunk]:
        """Yield images in chunks as the server produces them."""
        stream = self._stub.StreamSample(
            sample_request(model, n, seed, temperature), timeout=self.timeout
        )
        try:
            for chunk in stream:
                yield SampleChunk(
                    model=chunk.model,
                    seed=chunk.seed,
                    offset=chunk.offset,
                    images=[from_png(png) for png in chunk.images],
                )
        except grpc.RpcError as exc:
            raise from_grpc(exc) from None
        finally:
            stream.cancel()

    def encode(self, model: str, images: Iterable[ImageInput]) -> np.ndarray:
        """Latents of ``images`` for a model with one latent group, ``(len(images), ...)``."""
        return single_group(model, self.encode_groups(model, images))

    def encode_groups(self, model: str, images: Iterable[ImageInput]) -> dict[str, np.ndarray]:
        """Every latent group of ``images`` by name (NVAE groups, flow scales, VQ codes)."""
        request = pb.EncodeRequest(model=model, images=to_pngs(images))
        response = self._unary(self._stub.Encode, request)
        return {g.name: np.stack([_latent(t) for t in g.latents]) for g in response.groups}

    def log_prob(
        self,
        model: str,
        images: Iterable[ImageInput],
        samples: int | None = None,
        seed: int | None = None,
    ) -> LogProbResult:
        """Bits/dim of each image; ``samples`` > 1 asks for an importance-weighted bound."""
        request = pb.LogProbRequest(model=model, images=to_pngs(images))
        if samples is not None:
            request.samples = samples
        if seed is not None:
            request.seed = seed
        r = self._unary(self._stub.LogProb, request)
        return LogProbResult(
            model=r.model,
            bits_per_dim=list(r.bits_per_dim),
            bound=r.bound,
            samples=r.samples,
            seed=r.seed if r.HasField("seed") else None,
        )

    def reconstruct(self, model: str, images: Iterable[ImageInput]) -> list[Image.Image]:
        """Encode then decode ``images`` (what the model keeps of them)."""
        request = pb.ReconstructRequest(model=model, images=to_pngs(images))
        response = self._unary(self._stub.Reconstruct, request)
        return [from_png(png) for png in response.images]

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unary(self, method, request):  # noqa: ANN001, ANN202 - thin wrapper over stubs
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise from_grpc(exc) from None


def sample_request(
    model: str, n: int, seed: int | None = None, temperature: float = 1.0
) -> pb.SampleRequest:
    """Build a SampleRequest, leaving ``seed`` unset when the server should draw one."""
    request = pb.SampleRequest(model=model, n=n, temperature=temperature)
    if seed is not None:
        request.seed = seed
    return request


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
    )


def _latent(t: pb.Latent) -> np.ndarray:
    if len(t.codes):
        return np.asarray(t.codes, np.int64).reshape(t.shape)
    return np.asarray(t.values, np.float32).reshape(t.shape)
