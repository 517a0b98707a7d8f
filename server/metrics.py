"""Every Prometheus metric of the server, declared once on an injected registry.

Tests pass a fresh ``CollectorRegistry`` so they never see each other's counts; the
transports, the service and the batcher record into the one ``ServerMetrics`` they share.

Every label value comes from a closed set, never from what a client sent: each series lives
as long as the server, so one label value per distinct request field would grow /metrics
without bound. Models are labelled with the ``name@version`` of a loaded version (or
``unknown``), methods with a name the code registered (``allow_methods``, or ``other``),
statuses with the domain errors' fixed codes, a model's instances (``model_instance``) with
their index below its configured count. That label is not called ``instance``: Prometheus
gives every scraped series an ``instance`` label of its own (the target), and would rename
ours to ``exported_instance``.

With several workers (``workers`` > 1, docs/workers.md) each serving process records into
prometheus_client's multiprocess files (``PROMETHEUS_MULTIPROC_DIR``, set by the parent
before a worker imports prometheus_client) and any worker answers a scrape with the sums
over all of them: ``scrape`` is then a registry of the ``MultiProcessCollector``. Each
gauge says how its workers' values combine (``multiprocess_mode``; ignored with one
worker); the process collector is left out there (its figures would be one worker's).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector

M = TypeVar("M", bound=MetricWrapperBase)

#: The ``method`` label of a request whose call has no registered name.
OTHER_METHOD = "other"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_JOB_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_JOBS_PER_STEP_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
_STAGE_BUCKETS = _LATENCY_BUCKETS + _JOB_BUCKETS[_JOB_BUCKETS.index(30.0) :]


#: The environment variable that puts prometheus_client in multiprocess mode.
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_scrape() -> CollectorRegistry | None:
    """The registry a worker's ``/metrics`` encodes when several workers share the ports:
    every worker's series merged from the multiprocess files. None in a single process."""
    if not os.environ.get(MULTIPROC_DIR_ENV):
        return None
    scrape = CollectorRegistry()
    MultiProcessCollector(scrape)
    return scrape


class ServerMetrics:
    def __init__(
        self,
        registry: CollectorRegistry,
        scrape: CollectorRegistry | None = None,
        worker: int | None = None,
    ) -> None:
        """``scrape``: what ``/metrics`` answers with, when not ``registry`` itself (the
        merged series of several workers); ``worker``: this worker's index among several."""
        self.registry = registry
        self.scrape = scrape if scrape is not None else registry
        if scrape is None:
            # latentserve_process_resident_memory_bytes, _cpu_seconds_total, ...: the
            # server's own, so dashboards and alerts need not know the scrape job's name.
            ProcessCollector(namespace="latentserve", registry=registry)
        self._methods: set[str] = set()
        self._children: dict[tuple[int, tuple[str, ...]], MetricWrapperBase] = {}
        self.requests = Counter(
            "latentserve_requests",
            "Requests answered, by model, method, protocol and status.",
            ["model", "method", "protocol", "status"],
            registry=registry,
        )
        self.request_latency = Histogram(
            "latentserve_request_duration_seconds",
            "Time from a request entering the service to its answer.",
            ["model", "method", "protocol"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "latentserve_queue_wait_seconds",
            "Time a request waited in a batcher queue before its batch started.",
            ["model", "graph"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "latentserve_batch_items",
            "Items per executed batch, by the model instance that ran it.",
            ["model", "graph", "model_instance"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.compute_time = Histogram(
            "latentserve_batch_compute_seconds",
            "Time a graph took to run one batch, by the model instance that ran it (the rate "
            "of its sum: how busy each instance is).",
            ["model", "graph", "model_instance"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_failures = Counter(
            "latentserve_batch_failures",
            "Batches whose graph raised or returned the wrong number of outputs.",
            ["model", "graph", "model_instance"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "latentserve_requests_in_flight",
            "Requests being handled right now.",
            ["protocol"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.jobs = Counter(
            "latentserve_jobs",
            "Jobs ended, by final state (done, failed, cancelled) or refused at admission.",
            ["model", "method", "state"],
            registry=registry,
        )
        self.jobs_active = Gauge(
            "latentserve_jobs_active",
            "Jobs admitted and not yet finished (queued + running).",
            ["model"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.jobs_running = Gauge(
            "latentserve_jobs_running",
            "Multi-step jobs taking part in the model's denoiser steps.",
            ["model"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.jobs_queued = Gauge(
            "latentserve_jobs_queued",
            "Multi-step jobs waiting for a place among the running ones.",
            ["model"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.job_latency = Histogram(
            "latentserve_job_duration_seconds",
            "Time from a job's admission to its end.",
            ["model", "method"],
            buckets=_JOB_BUCKETS,
            registry=registry,
        )
        self.time_to_first_step = Histogram(
            "latentserve_time_to_first_step_seconds",
            "Time from a job's admission to the end of its first step.",
            ["model"],
            buckets=_JOB_BUCKETS,
            registry=registry,
        )
        self.job_steps = Counter(
            "latentserve_job_steps",
            "Steps computed for jobs (one per job per denoiser iteration it took part in).",
            ["model"],
            registry=registry,
        )
        self.step_iterations = Counter(
            "latentserve_step_iterations",
            "Denoiser iterations: one batched call (or set of calls) for all running jobs.",
            ["model"],
            registry=registry,
        )
        self.step_batch_jobs = Histogram(
            "latentserve_step_batch_jobs",
            "Jobs sharing one denoiser iteration.",
            ["model"],
            buckets=_JOBS_PER_STEP_BUCKETS,
            registry=registry,
        )
        self.job_stage = Histogram(
            "latentserve_job_stage_seconds",
            "Time a finished diffusion job spent per stage: text_encode, image_encode, denoise "
            "(from asking for a place among the running jobs to its last step), decode.",
            ["model", "stage"],
            buckets=_STAGE_BUCKETS,
            registry=registry,
        )
        self.text_cache_hits = Counter(
            "latentserve_text_cache_hits",
            "Prompts whose text-encoder states were reused (cached or already being computed).",
            ["model"],
            registry=registry,
        )
        self.text_cache_misses = Counter(
            "latentserve_text_cache_misses",
            "Prompts the text encoder graph had to compute.",
            ["model"],
            registry=registry,
        )
        self.queue_drops = Counter(
            "latentserve_queue_drops",
            "Queued work dropped before it computed, by queue (a graph's batcher, or steps: "
            "a model's job queue) and reason: deadline (the client's deadline passed), "
            "cancelled (its caller went away) or failed (an earlier part of it failed).",
            ["model", "queue", "reason"],
            registry=registry,
        )
        self.ready = Gauge(
            "latentserve_ready",
            "1 while the server serves (models loaded and warmed up, not draining), else 0: "
            "what /readyz and gRPC health say.",
            multiprocess_mode="livemin",
            registry=registry,
        )
        self.max_jobs = Gauge(
            "latentserve_max_jobs",
            "Jobs the server admits at once (queued + running, the max_jobs setting): the "
            "limit latentserve_jobs_active is measured against.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.models_loaded = Gauge(
            "latentserve_models_loaded",
            "Model versions loaded and ready to serve.",
            multiprocess_mode="livemin",
            registry=registry,
        )
        self.auth_refused = Counter(
            "latentserve_auth_refused",
            "Requests refused for a missing or unknown bearer token, by protocol and reason.",
            ["protocol", "reason"],
            registry=registry,
        )
        self.model_versions = Gauge(
            "latentserve_model_versions",
            "Loaded model versions (1 each) by state: serving, or draining (removed from "
            "the repository, unloaded once its in-flight requests and jobs finish).",
            ["model", "state"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.model_warmup = Gauge(
            "latentserve_model_warmup_seconds",
            "How long a version's warm-up took (each capability run once before it served).",
            ["model"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.model_reloads = Counter(
            "latentserve_model_reloads",
            "Versions a repository reload acted on, by outcome: loaded, refused (broken: "
            "checksum, manifest, graph or warm-up failed) or removed.",
            ["model", "outcome"],
            registry=registry,
        )

        self._worker_requests = None
        if worker is not None:
            self._worker_requests = Counter(
                "latentserve_worker_requests",
                "Requests answered by each worker (its index): how the kernel spread the "
                "connections over the workers sharing the ports.",
                ["worker"],
                registry=registry,
            ).labels(str(worker))

    def drop(self, gauge: Gauge, *labels: str) -> None:
        """End a gauge's series (no error where there is none). prometheus_client cannot
        remove a series in multiprocess mode, so with several workers it reads 0 instead."""
        if self.scrape is not self.registry:
            gauge.labels(*labels).set(0)
            return
        with contextlib.suppress(KeyError):
            gauge.remove(*labels)

    def allow_methods(self, names: Iterable[str]) -> None:
        """Register call names the ``method`` label may take: the service's calls, the REST
        routes and the gRPC methods, named by the code at start-up."""
        self._methods.update(names)

    def method_label(self, name: str) -> str:
        """``name`` if the code registered it, else ``other``: a name built from a request
        (an unknown job method, a route nobody declared) never becomes a label."""
        return name if name in self._methods else OTHER_METHOD

    def child(self, metric: M, *labels: str) -> M:
        """``metric.labels(*labels)``, looked up once: the per-request metrics are recorded
        on every call, and ``labels`` locks and rebuilds its key each time. Label values
        come from closed sets (see above) and series are never removed for them, so the
        cache holds what the registry holds."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found  # type: ignore[return-value]

    def record_request(
        self,
        model: str,
        method: str,
        protocol: str,
        status: str,
        seconds: float | None = None,
        exemplar: dict[str, str] | None = None,
    ) -> None:
        """Count one answered request (and time it when ``seconds`` is given, with the
        request's trace as ``exemplar`` when traced). ``model`` is a loaded version's label
        or ``unknown``; ``method`` is bounded here."""
        method = self.method_label(method)
        self.child(self.requests, model, method, protocol, status).inc()
        if self._worker_requests is not None:
            self._worker_requests.inc()
        if seconds is not None:
            self.child(self.request_latency, model, method, protocol).observe(seconds, exemplar)

    def shutdown_summary(self) -> str:
        """Requests answered by status and those still in flight, for the line a stopping
        server logs: after a clean drain nothing is in flight."""
        answered: dict[str, int] = {}
        for family in self.requests.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    status = sample.labels["status"]
                    answered[status] = answered.get(status, 0) + int(sample.value)
        in_flight = sum(int(s.value) for family in self.in_flight.collect() for s in family.samples)
        counts = " ".join(f"{status}={n}" for status, n in sorted(answered.items()))
        return f"requests answered: {counts or 'none'}; in flight: {in_flight}"
