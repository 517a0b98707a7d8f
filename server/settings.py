"""Server settings: defaults < TOML file (``--config``) < ``LATENTSERVE_*`` env < CLI flags.

Per-model tables (``[models.NAME]``) override the batching defaults a model's manifest
ships, so an operator can tune one model without re-exporting it. How many batches of a
graph compute at once depends on the machine, not the model, so its default is a server
setting (``max_concurrent_batches``) that a model's table may also override. So is
``instances``: how many copies of a model's graphs serve it (a count on CPU, or the CUDA
device ids to put one copy on each).
"""

from __future__ import annotations

import contextlib
import json
import os
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from latentserve.manifest import ServingDefaults

Backend = Literal["onnxruntime", "torchscript"]

_CONFIG_FILE: ContextVar[Path | None] = ContextVar("latentserve_config_file", default=None)

# Probes (ours and the Open Inference Protocol's, over both transports), metrics scrapers
# and the API's own description (docs, OpenAPI, gRPC health and reflection) answer without
# a token; everything that touches a model needs one.
AUTH_EXEMPT_PATHS = (
    "/",  # the playground page (only itself: see security.auth.is_exempt)
    "/playground",
    "/healthz",
    "/readyz",
    "/v2/health/live",
    "/v2/health/ready",
    "/inference.GRPCInferenceService/ServerLive",
    "/inference.GRPCInferenceService/ServerReady",
    "/metrics",
    "/docs",
    "/openapi.json",
    "/grpc.health.v1.Health",
    "/grpc.reflection.v1alpha.ServerReflection",
)


def parse_instances(value: Any) -> int | tuple[int, ...]:
    """``instances``: a count of copies (>= 1), or a non-empty list of distinct CUDA device
    ids (>= 0), one copy on each. A string (an environment variable) is read as JSON."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = json.loads(value)

    def device_id(d: Any) -> bool:
        return isinstance(d, int) and not isinstance(d, bool) and d >= 0

    if device_id(value) and value >= 1:
        return value
    listed = isinstance(value, (list, tuple)) and bool(value)
    if listed and all(device_id(d) for d in value) and len(set(value)) == len(value):
        return tuple(value)
    raise ValueError(
        "instances must be a count >= 1 (CPU) or a non-empty list of distinct GPU device "
        f"ids >= 0, got {value!r}"
    )


#: A model's copies: a count, or one per CUDA device id listed.
Instances = Annotated[int | tuple[int, ...], PlainValidator(parse_instances)]


class ModelOverrides(BaseModel):
    """Per-model settings; ``None`` keeps what the manifest (or the global backend) says."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Backend | None = None
    max_batch_size: int | None = Field(default=None, gt=0)
    max_queue_delay_ms: float | None = Field(default=None, ge=0)
    max_queue_size: int | None = Field(default=None, gt=0)
    max_n: int | None = Field(default=None, gt=0)
    max_concurrent_batches: int | None = Field(default=None, gt=0)
    max_running_jobs: int | None = Field(default=None, gt=0)
    max_steps: int | None = Field(default=None, gt=0)
    text_cache_size: int | None = Field(default=None, ge=0)
    instances: Instances | None = None


StepBatching = Literal["iteration", "request"]


class ServingOptions(ServingDefaults):
    """A model's batching as served: the manifest's defaults, the server's and overrides."""

    max_concurrent_batches: int = Field(default=1, gt=0)
    max_running_jobs: int = Field(default=16, gt=0)
    max_steps: int = Field(default=1000, gt=0)
    step_batching: StepBatching = "iteration"
    text_cache_size: int = Field(default=1024, ge=0)
    max_image_pixels: int = Field(default=4096 * 4096, gt=0)
    instances: Instances = 1

    @property
    def instance_count(self) -> int:
        """How many copies of the model's graphs serve it."""
        return self.instances if isinstance(self.instances, int) else len(self.instances)


def _default_threads() -> int:
    # Leave a core for the event loop (HTTP/gRPC parsing, PNG encoding) on small boxes.
    return max(1, (os.cpu_count() or 2) - 1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LATENTSERVE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    repository: Path = Path("models")
    host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    backend: Backend = "onnxruntime"
    models: dict[str, ModelOverrides] = Field(default_factory=dict)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    # HTTP connections (server/security/http_limits.py): a request's head (request line + headers)
    # may be max_header_bytes (431 past it) and must arrive within http_header_timeout_s
    # (408), its body within http_body_timeout_s; a kept-alive connection idle for
    # http_keep_alive_s is closed; past max_http_connections open connections a request
    # gets 503; http_backlog connections may wait for the server to accept them.
    max_header_bytes: int = Field(default=32 * 1024, gt=0)
    http_header_timeout_s: float = Field(default=10.0, gt=0)
    http_body_timeout_s: float = Field(default=60.0, gt=0)
    http_keep_alive_s: float = Field(default=5.0, gt=0)
    max_http_connections: int = Field(default=1000, gt=0)
    http_backlog: int = Field(default=1024, gt=0)
    # gRPC calls of the generative service in progress at once (server/security/grpc_limits.py);
    # the next is refused with RESOURCE_EXHAUSTED + retry-after, counted as "overloaded".
    max_grpc_concurrent_rpcs: int = Field(default=1000, gt=0)
    # gRPC calls that arrived but wait to be picked up; past it gRPC core drops calls at
    # random (CANCELLED, uncounted) up to twice this, then all (its own default is 1000).
    grpc_max_pending_calls: int = Field(default=10000, gt=0)
    max_image_pixels: int = Field(default=4096 * 4096, gt=0)
    request_timeout_s: float = Field(default=30.0, gt=0)
    drain_timeout_s: float = Field(default=10.0, ge=0)
    stream_chunk_size: int = Field(default=4, gt=0)
    # Requests of one gRPC SampleMany call worked on or waiting to be sent back at once;
    # past it the server reads no more of that call's requests until one is answered.
    max_stream_requests_in_flight: int = Field(default=64, gt=0)
    # Importance samples per image a log-prob request may ask for: each one is a decoder
    # pass, so this bounds one request's compute at max_n * max_log_prob_samples passes.
    max_log_prob_samples: int = Field(default=256, gt=0)
    # A log-prob request's work is images x samples decoder passes. One request may ask for
    # at most max_log_prob_work (64 images x 64 samples, or 16 x 256); it computes in graph
    # calls of at most log_prob_chunk_work passes, max_concurrent_log_prob requests at a
    # time with max_waiting_log_prob more waiting (the next gets 429 / RESOURCE_EXHAUSTED),
    # so the memory log-prob takes stays bounded whatever clients send (bench/README.md).
    max_log_prob_work: int = Field(default=4096, gt=0)
    log_prob_chunk_work: int = Field(default=256, gt=0)
    max_concurrent_log_prob: int = Field(default=2, gt=0)
    max_waiting_log_prob: int = Field(default=16, ge=0)
    intra_op_threads: int = Field(default_factory=_default_threads, gt=0)
    # Three batches per graph in flight: while one batch's results are encoded and answered
    # the others keep the cores computing. Measured on 2 cores (bench/README.md): against one
    # at a time the compute-bound decoder gains about 1.6x, and three beat two for both the
    # compute-bound and the default (event-loop-bound) model.
    max_concurrent_batches: int = Field(default=3, gt=0)
    # Copies of each model's graphs, each with its own sessions; a batch goes to a free one
    # (up to max_concurrent_batches each). A count, or on GPU the CUDA device ids, one copy
    # on each (docs/instances.md). On CPU every copy's sessions use intra_op_threads.
    instances: Instances = 1
    # Jobs (every sample request is one): admission bounds queued + running jobs server-wide
    # and refuses the next one with 429 / RESOURCE_EXHAUSTED; an admitted job is never
    # refused later. Multi-step jobs of one model take part in its denoiser steps up to
    # max_running_jobs at a time; the rest wait their turn in order.
    max_jobs: int = Field(default=256, gt=0)
    max_running_jobs: int = Field(default=16, gt=0)
    # Steps one multi-step job may ask for: a step is a denoiser pass per image.
    max_steps: int = Field(default=1000, gt=0)
    job_timeout_s: float = Field(default=600.0, gt=0)
    # An event stream with nothing to say for this long sends an SSE comment, so proxies and
    # load balancers do not close it as idle.
    sse_keepalive_s: float = Field(default=15.0, gt=0)
    # Finished jobs stay readable at GET /v1/jobs/{id} this long (at most max_finished_jobs).
    job_ttl_s: float = Field(default=600.0, gt=0)
    max_finished_jobs: int = Field(default=1024, gt=0)
    # Jobs across replicas (docs/scale-out.md): "memory" keeps a job in the process that
    # admitted it; "redis" shares every job through the Redis at redis_url (the redis
    # extra), so any replica behind a load balancer answers for any job. Each replica
    # renews a lease every third of replica_lease_s; a job whose replica's lease lapsed is
    # reported failed. Redis keeps a job's last job_events_max events (the final one always).
    job_store: Literal["memory", "redis"] = "memory"
    redis_url: str | None = None
    replica_lease_s: float = Field(default=10.0, gt=0)
    job_events_max: int = Field(default=256, gt=0)
    # Serving processes sharing the HTTP and gRPC ports (SO_REUSEPORT; docs/workers.md):
    # each has its own event loop, batchers and graph sessions. More than one needs
    # job_store = "redis", since a job lives in the worker that admitted it.
    workers: int = Field(default=1, ge=1, le=64)
    # "iteration": a job joins the very next denoiser step; "request": jobs waiting when a
    # batch starts run their whole loops together and later ones wait (static batching,
    # kept as the benchmark's baseline).
    step_batching: StepBatching = "iteration"
    # Prompts whose text-encoder states a text-to-image model keeps (LRU; 0: none). One
    # entry is max_tokens x hidden_size float32: 48 KiB at 32 x 384.
    text_cache_size: int = Field(default=1024, ge=0)
    # Bearer tokens, one a line (server/security/auth.py); none: no authentication. Exempt paths are
    # REST paths and gRPC methods ("/pkg.Service/Method"); each covers what lies under it.
    auth_tokens_file: Path | None = None
    auth_exempt_paths: tuple[str, ...] = AUTH_EXEMPT_PATHS
    # TLS on both transports (server/security/tls.py); tls_client_ca makes gRPC require
    # client certificates.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    # Browsers calling the REST API from other origins (server/security/cors.py); none: CORS off.
    cors_allow_origins: tuple[str, ...] = ()
    cors_allow_methods: tuple[str, ...] = ("GET", "POST", "DELETE")
    cors_allow_headers: tuple[str, ...] = ("Authorization", "Content-Type", "Accept")

    # Hot reload: every this many seconds the server serves what the repository holds
    # (new versions loaded and warmed up, removed ones unloaded); None: only on request.
    repository_poll_interval_s: float | None = Field(default=None, gt=0)
    # One admin token a line: a bearer token that may reload the repository. Without it,
    # POST /v1/repository/reload and gRPC ReloadRepository are refused.
    admin_tokens_file: Path | None = None

    @model_validator(mode="after")
    def _redis_needs_its_url(self) -> Settings:
        if self.job_store == "redis" and not self.redis_url:
            raise ValueError('redis_url: job_store = "redis" needs the URL of the Redis')
        return self

    @model_validator(mode="after")
    def _workers_share_jobs(self) -> Settings:
        if self.workers > 1 and self.job_store != "redis":
            raise ValueError(
                f'workers: {self.workers} workers need job_store = "redis" (a job lives in '
                "the worker that admitted it; the shared store lets every worker answer for "
                'it), not job_store = "memory"'
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_CONFIG_FILE.get())
        return (init_settings, env_settings, toml)

    def backend_for(self, model: str) -> Backend:
        override = self.models.get(model)
        return override.backend if override and override.backend else self.backend

    def serving_for(self, model: str, defaults: ServingDefaults) -> ServingOptions:
        """The manifest's batching defaults and the server's, with this model's overrides."""
        values = defaults.model_dump() | {
            "max_concurrent_batches": self.max_concurrent_batches,
            "max_running_jobs": self.max_running_jobs,
            "max_steps": self.max_steps,
            "step_batching": self.step_batching,
            "text_cache_size": self.text_cache_size,
            "max_image_pixels": self.max_image_pixels,
            "instances": self.instances,
        }
        override = self.models.get(model)
        if override is not None:
            values |= override.model_dump(exclude_none=True, exclude={"backend"})
        return ServingOptions(**values)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from an optional TOML file, the environment and explicit overrides."""
    if config_file is not None and not config_file.is_file():
        raise FileNotFoundError(f"settings file not found: {config_file}")
    token = _CONFIG_FILE.set(config_file)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    finally:
        _CONFIG_FILE.reset(token)
