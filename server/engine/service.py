"""The one service layer both transports call: resolve, validate, run, measure.

REST and gRPC only translate wire types to these calls and map the domain errors they
raise. Sample parameters arrive as the mapping the client sent and are checked by the
model's pipeline kind (``latentserve.server.params``); every other rule about what a request
may ask (image count, seeds, log-prob samples) lives here once. Every sample request is a
job (``latentserve.server.engine.jobs``), admitted once and then never refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any, TypeVar

import numpy as np
from latentserve.server import codecs, tracing
from latentserve.server.engine import deadlines
from latentserve.server.engine.heavy_work import HeavyWorkLimit
from latentserve.server.engine.job_store import open_job_store
from latentserve.server.engine.jobs import Job, JobManager, JobView, Work
from latentserve.server.errors import (
    DeadlineExceeded,
    InvalidArgument,
    ServingError,
    Unavailable,
    shown,
)
from latentserve.server.metrics import ServerMetrics
from latentserve.server.params import RequestParams, resolve_seed
from latentserve.server.pipelines import build_pipeline
from latentserve.server.repository.reload import IndexEntry, ReloadResult, RepositoryReloader
from latentserve.server.repository.runtime import open_graph
from latentserve.server.repository.store import GraphOpener, Lease, LoadedModel, ModelRepository
from latentserve.server.repository.warmup import warm_up
from latentserve.server.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
#: What a job can do: the generating methods.
JOB_METHODS = ("sample", "text_to_image")
#: The names the service records its calls under (the requests' ``method`` label):
#: ``submit_job`` is a job submission naming no known method.
CALLS = (
    *JOB_METHODS,
    *(f"submit_{method}" for method in JOB_METHODS),
    "submit_job",
    "stream_sample",
    "interpolate",
    "encode",
    "log_prob",
    "reconstruct",
    "reload_repository",
)
_OFFLOAD_PIXELS = 1 << 20  # past this many pixels, PNG work moves off the event loop


@dataclass(frozen=True)
class ModelDescription:
    name: str
    version: str
    family: str
    description: str
    capabilities: list[str]
    height: int
    width: int
    channels: int
    latent_shape: list[int]
    likelihood: str | None
    pipeline: str
    sample_parameters: list[str]
    # The model's own values for sample parameters a request leaves out (its manifest's).
    sample_defaults: dict[str, float]
    backend: str
    execution_providers: list[str]
    max_batch_size: int
    max_n: int
    versions: list[str]
    created: int  # Unix seconds of the export (the manifest's provenance), 0 if unreadable
    # The JSON schema of each generating method's parameters the model takes: what typed
    # protocols (the Open Inference Protocol's named tensors) declare per model.
    parameter_schemas: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class SampleResult:
    model: str  # resolved name@version
    seed: int
    images: list[bytes]  # PNG; empty when the caller asked for pixels instead
    # uint8 (n, H, W, C), when the caller asked for pixels (a protocol that answers in
    # tensors): encoding PNGs only for that caller to decode them would cost both ways.
    pixels: np.ndarray | None = None


@dataclass(frozen=True)
class SampleChunk:
    model: str
    seed: int
    offset: int
    images: list[bytes]


@dataclass(frozen=True)
class InterpolateChunk:
    model: str
    seed_a: int | None  # None when interpolating between images
    seed_b: int | None
    offset: int  # index of images[0] among the frames
    images: list[bytes]


@dataclass(frozen=True)
class EncodeResult:
    model: str
    groups: dict[str, np.ndarray]  # group name -> (n, *shape), float32 or int64 codes


@dataclass(frozen=True)
class LogProbResult:
    model: str
    bits_per_dim: list[float]
    bound: str  # "exact", "elbo" or "importance_weighted"
    samples: int
    seed: int | None  # the noise seed, for sampled bounds


@dataclass(frozen=True)
class ReconstructResult:
    model: str
    images: list[bytes]


class _Call:
    """Labels of one request, filled in as it is resolved; read when it is recorded. It
    also holds the leases on the model versions it uses until it ends."""

    __slots__ = ("model", "leases")

    def __init__(self) -> None:
        self.model = "unknown"
        self.leases: list[Lease] = []

    def use(self, lease: Lease) -> LoadedModel:
        self.leases.append(lease)
        self.model = lease.model.label
        return lease.model

    def hand_over(self, job: Job) -> None:
        """The job may outlive the call: it holds the versions until it finishes."""
        for lease in self.leases:
            job.on_finished(lease.share().release)


class GenerativeService:
    def __init__(
        self,
        settings: Settings,
        metrics: ServerMetrics,
        repository: ModelRepository | None = None,
        opener: GraphOpener = open_graph,
    ) -> None:
        """``opener`` opens graph files for ``load`` and for reloads (tests pass fakes)."""
        self.settings = settings
        self.metrics = metrics
        metrics.allow_methods(CALLS)
        self._opener = opener
        self._repository = repository
        self._draining = False
        self._in_flight = 0
        self._idle = asyncio.Event()  # set while no request is in progress
        self._idle.set()
        self._reloader = None if repository is None else self._reloader_for(repository)
        # name@version -> (the loaded version, its description), see ``_describe``
        self._descriptions: dict[str, tuple[weakref.ref[LoadedModel], ModelDescription]] = {}
        self._polling: asyncio.Task[None] | None = None
        self.jobs = JobManager(
            metrics,
            max_jobs=settings.max_jobs,
            ttl_s=settings.job_ttl_s,
            max_finished=settings.max_finished_jobs,
            store=open_job_store(settings),
        )
        self._log_prob_limit = HeavyWorkLimit(
            settings.max_concurrent_log_prob, settings.max_waiting_log_prob, "log-prob"
        )

    @property
    def draining(self) -> bool:
        """The server is shutting down: new work is refused, accepted work finishes."""
        return self._draining

    @property
    def ready(self) -> bool:
        return self._repository is not None and not self._draining

    async def load(self) -> None:
        """Load the repository off the event loop (graph sessions take a while to build),
        then warm every version up; ``ready`` turns true only after that. A version that
        fails its warm-up stops the start with ``WarmUpFailed`` naming it. The job store
        connects first: a shared store that cannot be reached stops the start."""
        await self.jobs.start()
        repository = await asyncio.to_thread(
            ModelRepository.load,
            self.settings.repository,
            self.settings,
            build_pipeline,
            self.metrics,
            self._opener,
        )
        for model in repository.models():  # before ready: no client meets a cold graph
            await warm_up(model, self.metrics)
        self._repository = repository
        self._reloader = self._reloader_for(repository)
        self.metrics.ready.set(0 if self._draining else 1)
        if self.settings.repository_poll_interval_s is not None:
            polling = self._reloader.poll(self.settings.repository_poll_interval_s)
            self._polling = asyncio.get_running_loop().create_task(polling)

    def _reloader_for(self, repository: ModelRepository) -> RepositoryReloader:
        return RepositoryReloader(repository, self.settings, self.metrics, self._opener)

    async def reload_repository(self, protocol: str) -> ReloadResult:
        """Serve what the repository holds now (see ``repository/reload.py``); the frontends
        let only admins call it."""
        async with self._track("reload_repository", protocol):
            return await self._live_reloader().reload()

    async def load_model(self, name: str, protocol: str) -> ReloadResult:
        """Serve ``name`` from the repository (again, after ``unload_model``); admins only.
        A version that cannot be served is refused with its reason."""
        async with self._track("load_model", protocol):
            result = await self._live_reloader().load(name)
            if result.refused:
                reasons = "; ".join(f"{r.model}: {r.error}" for r in result.refused)
                raise InvalidArgument("name", f"cannot load {name}: {reasons}")
            return result

    async def unload_model(self, name: str, protocol: str) -> list[str]:
        """Stop serving every version of ``name`` until it is loaded again; admins only."""
        async with self._track("unload_model", protocol):
            return await self._live_reloader().unload(name)

    def repository_index(self) -> list[IndexEntry]:
        """Every version on disk or served, and whether it serves."""
        return self._live_reloader().index()

    def _live_reloader(self) -> RepositoryReloader:
        if self._reloader is None or self._draining:
            raise Unavailable("models are still loading, or the server is shutting down")
        return self._reloader

    def start_draining(self) -> None:
        self._draining = True
        self.metrics.ready.set(0)

    async def drain(self, timeout_s: float) -> int:
        """Let the requests and jobs in progress finish within ``timeout_s``; fail the jobs
        still running then (see ``JobManager.drain``) and return how many were failed so."""
        self.start_draining()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        return await self.jobs.drain(max(0.0, deadline - loop.time()))

    async def close(self) -> None:
        if self._polling is not None:
            self._polling.cancel()
            await asyncio.gather(self._polling, return_exceptions=True)
        await self.jobs.close()
        if self._repository is not None:
            await self._repository.close()

    # -- lookups -------------------------------------------------------------------------

    def _resolve(self, ref: str) -> LoadedModel:
        if self._repository is None:
            raise Unavailable("models are still loading")
        return self._repository.resolve(ref)

    def _lease(self, ref: str) -> Lease:
        """The version ``ref`` names, held (kept loaded) for the call that uses it."""
        if self._repository is None:
            raise Unavailable("models are still loading")
        return self._repository.lease(ref)

    def list_models(self) -> list[ModelDescription]:
        if self._repository is None:
            raise Unavailable("models are still loading")
        return [self._describe(m) for m in self._repository.models()]

    def get_model(self, ref: str) -> ModelDescription:
        return self._describe(self._resolve(ref))

    def _describe(self, model: LoadedModel) -> ModelDescription:
        """The model's description, made once per loaded version (a protocol that reads it
        on every request, the Open Inference Protocol's, would otherwise rebuild it each
        time); made again when its name's versions change."""
        versions = self._repository.versions(model.manifest.name) if self._repository else []
        known = self._descriptions.get(model.label)
        if known is not None and known[0]() is model and known[1].versions == versions:
            return known[1]
        description = self._description(model, versions)
        # a weak reference: a description does not keep an unloaded version's graphs alive
        self._descriptions[model.label] = (weakref.ref(model), description)
        return description

    @staticmethod
    def _description(model: LoadedModel, versions: list[str]) -> ModelDescription:
        m = model.manifest
        sample_fields = model.pipeline.params_for["sample"].model_fields
        defaults = model.pipeline.parameter_defaults()
        return ModelDescription(
            name=m.name,
            version=m.version,
            family=m.family,
            description=m.description,
            capabilities=list(m.capabilities),
            height=m.image.height,
            width=m.image.width,
            channels=m.image.channels,
            latent_shape=list(m.latent.shape),
            likelihood=m.likelihood,
            pipeline=m.pipeline,
            sample_parameters=list(sample_fields),
            sample_defaults={
                name: value for name, value in defaults.items() if name in sample_fields
            },
            backend=model.backend,
            execution_providers=model.providers,
            max_batch_size=model.serving.max_batch_size,
            max_n=model.serving.max_n,
            versions=versions,
            created=_unix_seconds(m.provenance.created_at),
            parameter_schemas={
                method: _schema(params, defaults)
                for method, params in model.pipeline.params_for.items()
                if method in JOB_METHODS and method in m.capabilities
            },
        )

    def model_label(self, ref: str) -> str:
        """``name@version`` for metric labels, ``unknown`` for anything unresolvable."""
        try:
            return self._resolve(ref).label
        except ServingError:
            return "unknown"

    def record_rejection(self, ref: str, method: str, protocol: str, status: str) -> None:
        """Count a request a transport refused before it reached the service."""
        self.metrics.record_request(self.model_label(ref), method, protocol, status)

    # -- inference -----------------------------------------------------------------------

    async def sample(self, ref: str, params: Mapping[str, Any], protocol: str) -> SampleResult:
        """Run a sample job and wait for it; the caller going away cancels the job."""
        return await self.generate(ref, "sample", params, protocol)

    async def generate(
        self,
        ref: str,
        method: str,
        params: Mapping[str, Any],
        protocol: str,
        *,
        pixels: bool = False,
    ) -> SampleResult:
        """Run a generating job (``sample``, ``text_to_image``) and wait for its images:
        PNGs, or with ``pixels`` the uint8 pixels themselves."""
        async with self._track(method, protocol) as call:
            job = self._submit(ref, method, params, call, retain=False, pixels=pixels)
            return _sample_result(await job.wait())

    async def submit_job(
        self, ref: str, method: str, params: Mapping[str, Any], protocol: str
    ) -> Job:
        """Admit a job that clients follow by its id (events, ``GET``, ``DELETE``)."""
        known = method in JOB_METHODS
        async with self._track(f"submit_{method}" if known else "submit_job", protocol) as call:
            if not known:
                methods = ", ".join(JOB_METHODS)
                raise InvalidArgument(
                    "method", f"unknown job method {shown(method)!r}; known: {methods}"
                )
            job = self._submit(ref, method, params, call, retain=True)
            await self.jobs.published(job)  # from now on every replica finds it
            return job

    async def get_job(self, job_id: str) -> JobView:
        """The job, whichever replica runs it (with a shared job store)."""
        return await self.jobs.find(job_id)

    async def cancel_job(self, job_id: str) -> JobView:
        """Cancel the job, whichever replica runs it: it stops at its next step boundary."""
        return await self.jobs.cancel(job_id)

    def _submit(
        self,
        ref: str,
        method: str,
        raw: Mapping[str, Any],
        call: _Call,
        *,
        retain: bool,
        pixels: bool = False,
    ) -> Job:
        model = call.use(self._lease(ref))
        params = model.pipeline.prepare(raw, method)

        async def work(progress: Any) -> dict[str, Any]:
            images = await model.pipeline.sample(params, progress)
            result = {"model": model.label, "seed": params.resolved_seed}
            if pixels:
                spec = model.manifest.image
                result["pixels"] = await self._offload(
                    images.size, codecs.batch_to_pixels, images, spec
                )
            else:
                result["images"] = await self._to_pngs(model, images)
            return result

        return self._start_job(call, model, method, params, work, retain=retain)

    def _start_job(
        self,
        call: _Call,
        model: LoadedModel,
        method: str,
        params: RequestParams,
        work: Work,
        *,
        retain: bool,
    ) -> Job:
        async def render(images: np.ndarray) -> list[bytes]:
            return await self._to_pngs(model, images)

        # the job's params as JSON-ready values: input images are not echoed back
        echoed = {
            k: v
            for k, v in params.model_dump(exclude_none=True).items()
            if not isinstance(v, bytes)
        }
        job = self.jobs.submit(
            model.label,
            method,
            echoed,
            work,
            render,
            deadline_s=self.settings.job_timeout_s,
            retain=retain,
        )
        call.hand_over(job)
        return job

    async def sample_stream(
        self, ref: str, raw: Mapping[str, Any], protocol: str
    ) -> AsyncIterator[SampleChunk]:
        """Chunks as they are produced; the first arrives before the last image is computed."""
        stream = attrgetter("sample_stream")
        chunks = self._stream(ref, "sample", "stream_sample", stream, raw, protocol)
        async for model, params, offset, pngs in chunks:
            yield SampleChunk(model, params.resolved_seed, offset, pngs)

    async def interpolate(
        self, ref: str, raw: Mapping[str, Any], protocol: str
    ) -> AsyncIterator[InterpolateChunk]:
        """Frames from ``seed_a``'s image to ``seed_b``'s (or between two encoded images), in
        chunks as they are made; models without a continuous prior refuse."""
        stream = attrgetter("interpolate")
        chunks = self._stream(ref, "interpolate", "interpolate", stream, raw, protocol)
        async for model, params, offset, pngs in chunks:
            # seeds stay unset between images
            yield InterpolateChunk(model, params.seed_a, params.seed_b, offset, pngs)

    async def _stream(
        self,
        ref: str,
        method: str,
        label: str,
        stream_of: Callable[[Any], Callable[[Any, int], AsyncIterator[tuple[int, np.ndarray]]]],
        raw: Mapping[str, Any],
        protocol: str,
    ) -> AsyncIterator[tuple[str, Any, int, list[bytes]]]:
        """``(model, params, offset, PNGs)`` of the chunks ``stream_of(pipeline)`` makes for
        ``method``'s parameters (recorded as ``label``). The stream is a job too (admitted,
        cancellable, bounded by the job deadline); its chunks pass through a one-slot queue,
        so computing runs at most a chunk ahead."""
        async with self._track(label, protocol) as call:
            model = call.use(self._lease(ref))
            params = model.pipeline.prepare(raw, method)
            chunk = min(self.settings.stream_chunk_size, model.serving.max_batch_size)
            stream = stream_of(model.pipeline)
            chunks: asyncio.Queue[tuple[int, list[bytes]] | None] = asyncio.Queue(maxsize=1)

            async def work(progress: Any) -> dict[str, Any]:
                try:
                    async for offset, images in stream(params, chunk):
                        await chunks.put((offset, await self._to_pngs(model, images)))
                except BaseException:
                    # the stream fails: unsent chunks are moot, the reader must wake up
                    while not chunks.empty():
                        chunks.get_nowait()
                    chunks.put_nowait(None)
                    raise
                await chunks.put(None)
                return {"model": model.label, "seed": getattr(params, "seed", None), "images": []}

            job = self._start_job(call, model, label, params, work, retain=False)
            try:
                while (item := await chunks.get()) is not None:
                    yield (model.label, params, *item)
                await job.wait()
            finally:
                job.cancel()

    async def encode(self, ref: str, images: list[bytes], protocol: str) -> EncodeResult:
        async with self._track("encode", protocol) as call:
            model = call.use(self._lease(ref))
            model.pipeline.require("encode")
            batch = await self._from_pngs(model, images)
            return EncodeResult(model.label, await self._timed(model.pipeline.encode(batch)))

    async def log_prob(
        self,
        ref: str,
        images: list[bytes],
        samples: int | None,
        seed: int | None,
        protocol: str,
    ) -> LogProbResult:
        """Bits/dim per image; says whether it is exact, an ELBO or an IW bound."""
        async with self._track("log_prob", protocol) as call:
            model = call.use(self._lease(ref))
            samples = 1 if samples is None else samples
            limit = self.settings.max_log_prob_samples
            if not 1 <= samples <= limit:
                raise InvalidArgument(
                    "samples", f"must be between 1 and {limit}, got {shown(samples)}"
                )
            bound = model.pipeline.log_prob_kind(samples)
            self._check_log_prob_work(len(images), samples)
            seed = resolve_seed(seed) if model.pipeline.log_prob_is_sampled else None
            async with self._log_prob_limit.slot():
                batch = await self._from_pngs(model, images)
                work = model.pipeline.log_prob(
                    batch, samples, seed or 0, self.settings.log_prob_chunk_work
                )
                bits = await self._timed(work)
            return LogProbResult(model.label, bits.astype(float).tolist(), bound, samples, seed)

    def _check_log_prob_work(self, images: int, samples: int) -> None:
        limit = self.settings.max_log_prob_work
        if images * samples > limit:
            raise InvalidArgument(
                "samples" if samples > 1 else "images",
                f"images x samples = {images} x {samples} = {images * samples} exceeds this "
                f"server's limit of {limit} (max_log_prob_work): send fewer images or samples",
            )

    async def reconstruct(self, ref: str, images: list[bytes], protocol: str) -> ReconstructResult:
        async with self._track("reconstruct", protocol) as call:
            model = call.use(self._lease(ref))
            model.pipeline.require("reconstruct")
            batch = await self._from_pngs(model, images)
            out = await self._timed(model.pipeline.reconstruct(batch))
            return ReconstructResult(model.label, await self._to_pngs(model, out))

    # -- helpers -------------------------------------------------------------------------

    async def _from_pngs(self, model: LoadedModel, images: list[bytes]) -> np.ndarray:
        max_n = model.serving.max_n
        if not 1 <= len(images) <= max_n:
            raise InvalidArgument("images", f"must hold 1 to {max_n} images, got {len(images)}")
        spec = model.manifest.image
        return await self._offload(
            len(images) * spec.height * spec.width,
            codecs.pngs_to_batch,
            images,
            spec,
            self.settings.max_image_pixels,
        )

    async def _to_pngs(self, model: LoadedModel, images: np.ndarray) -> list[bytes]:
        spec = model.manifest.image
        with tracing.span("png_encode", {"latentserve.images": len(images)}):
            return await self._offload(images.size, codecs.batch_to_pngs, images, spec)

    @staticmethod
    async def _offload(pixels: int, fn: Callable[..., T], *args: object) -> T:
        # Small images encode faster than a thread hop costs; big ones must not stall the loop.
        if pixels < _OFFLOAD_PIXELS:
            return fn(*args)
        return await asyncio.to_thread(fn, *args)

    async def _timed(self, work: Awaitable[T]) -> T:
        async with deadlines.within(self.settings.request_timeout_s, "request"):
            return await work

    @asynccontextmanager
    async def _track(self, method: str, protocol: str) -> AsyncIterator[_Call]:
        """Count the request with its final status and time it; keep the in-flight gauge.
        With tracing on, the request's span is current throughout (its job and the batches
        it reaches hang under it) and its trace id is the latency's exemplar."""
        call = _Call()
        in_flight = self.metrics.child(self.metrics.in_flight, protocol)
        in_flight.inc()
        self._in_flight += 1
        self._idle.clear()
        started = time.perf_counter()
        status = "ok"
        with tracing.request_span(method, protocol) as span:
            try:
                yield call
            except ServingError as exc:
                status = exc.code
                exc.recorded = True
                raise
            except (asyncio.CancelledError, GeneratorExit):
                # a gRPC deadline cancels the call: counted as what it is
                late = deadlines.passed(deadlines.current(), asyncio.get_running_loop().time())
                status = DeadlineExceeded.code if late else "cancelled"
                raise
            except Exception:
                status = "internal"
                log.exception("%s %s failed", protocol, method)
                raise
            finally:
                for lease in call.leases:
                    lease.release()
                in_flight.dec()
                self._in_flight -= 1
                if not self._in_flight:
                    self._idle.set()
                seconds = time.perf_counter() - started
                exemplar = None
                if span is not None:
                    span.set_attribute("latentserve.model", call.model)
                    exemplar = tracing.exemplar()
                self.metrics.record_request(call.model, method, protocol, status, seconds, exemplar)


@functools.cache
def _class_schema(params: type[RequestParams]) -> dict[str, Any]:
    """A parameter model's JSON schema, built once: models are described on every call."""
    return params.model_json_schema()


def _schema(params: type[RequestParams], defaults: dict[str, Any]) -> dict[str, Any]:
    """The parameters' schema with the model's own defaults for the fields it has (its
    default temperature, not the schema's ``null``); the cached schema is not changed."""
    schema = _class_schema(params)
    properties = schema.get("properties", {})
    ours = {name: value for name, value in defaults.items() if name in properties}
    if not ours:
        return schema
    properties = {**properties}
    for name, value in ours.items():
        properties[name] = {**properties[name], "default": value}
    return {**schema, "properties": properties}


def _unix_seconds(iso: str) -> int:
    try:
        return int(datetime.fromisoformat(iso).timestamp())
    except ValueError:
        return 0


def _sample_result(result: dict[str, Any]) -> SampleResult:
    return SampleResult(
        result["model"], result["seed"], result.get("images", []), result.get("pixels")
    )
