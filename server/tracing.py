"""OpenTelemetry traces: off unless the standard ``OTEL_*`` environment asks for them.

Turned on by ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``, or any installed exporter's
entry point name) or by an OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); ``OTEL_SDK_DISABLED=true`` or
``OTEL_TRACES_EXPORTER=none`` keep them off. Everything else (endpoint, headers, sampler,
resource, batch schedule) is read by the SDK itself.

While tracing is off every helper here returns at once without touching the OpenTelemetry
API, so the serving path pays one global lookup per call. The engine never sees a wire
header: transports put the caller's context in OpenTelemetry's context (FastAPI for REST,
``frontends.grpc_tracing`` for gRPC), the service opens one span per request under it, and
work that outlives or serves several requests (a batch, the shared denoiser loop) carries
the request spans it serves and links to them.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from importlib.metadata import entry_points
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer

#: The instrumentation scope every latentserve span is made under.
SCOPE = "latentserve.server"
#: The service name when ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` give none.
DEFAULT_SERVICE_NAME = "latentserve"

_tracer: Tracer | None = None  # None: tracing is off
_NO_SPAN: contextlib.nullcontext[None] = contextlib.nullcontext()
# The request spans the current work serves when it serves several (the denoiser loop).
_SERVED: ContextVar[tuple[Span, ...] | None] = ContextVar("latentserve_served", default=None)


def enabled() -> bool:
    return _tracer is not None


def install(provider: trace.TracerProvider | None) -> None:
    """Trace into ``provider`` from now on; ``None`` turns tracing off. Tests install an
    SDK provider with an in-memory exporter; the server calls ``configure_from_environment``."""
    global _tracer
    _tracer = None if provider is None else provider.get_tracer(SCOPE)


def exporter_names(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The trace exporters the ``OTEL_*`` settings ask for (none: tracing stays off).

    Unlike the SDK's auto-instrumentation, an unset ``OTEL_TRACES_EXPORTER`` means ``otlp``
    only when an OTLP endpoint is set: a server nobody configured exports nothing."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if not names:
        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        return [_entry_point_name("otlp", environ)] if endpoint else []
    if names.lower() == "none":
        return []
    return [_entry_point_name(name.strip(), environ) for name in names.split(",") if name.strip()]


def _entry_point_name(name: str, environ: Mapping[str, str]) -> str:
    # "otlp" picks its transport by OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL, as the spec says;
    # this package installs the http/protobuf one.
    if name != "otlp":
        return name
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    by_protocol = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
    if protocol not in by_protocol:
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL: unsupported OTLP protocol {protocol!r}")
    return by_protocol[protocol]


def configure_from_environment() -> Any | None:
    """Build the SDK's tracer provider from the ``OTEL_*`` settings, make it global (so the
    REST framework's request spans join) and trace into it; the provider, to shut down
    (which flushes what is buffered) when the server stops, or None when tracing is off."""
    names = exporter_names()
    if not names:
        install(None)
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)  # sampler from OTEL_TRACES_SAMPLER
    for name in names:
        found = entry_points(group="opentelemetry_traces_exporter", name=name)
        if not found:
            raise ValueError(f"OTEL_TRACES_EXPORTER: no trace exporter named {name!r} installed")
        exporter = next(iter(found)).load()()  # endpoint, headers, timeout: OTEL_EXPORTER_*
        provider.add_span_processor(BatchSpanProcessor(exporter))  # OTEL_BSP_* schedule
    trace.set_tracer_provider(provider)
    install(provider)
    return provider


# -- spans -------------------------------------------------------------------------------


def server_span(
    name: str, carrier: Mapping[str, str], attributes: dict[str, Any]
) -> contextlib.AbstractContextManager:
    """A transport's span for one call, continuing the caller's trace from ``carrier`` (its
    ``traceparent`` and ``tracestate``, read by the configured propagators), current while
    the block runs. FastAPI makes these itself for REST."""
    if _tracer is None:
        return _NO_SPAN
    parent = propagate.extract(carrier)
    return _tracer.start_as_current_span(
        name, context=parent, kind=SpanKind.SERVER, attributes=attributes
    )


def request_span(method: str, protocol: str) -> contextlib.AbstractContextManager:
    """The span of one request to the service (``latentserve.<method>``), current while the
    block runs (so the job it starts and the batches it reaches find it); a child of the
    transport's span."""
    if _tracer is None:
        return _NO_SPAN
    attributes = {"latentserve.method": method, "latentserve.protocol": protocol}
    return _tracer.start_as_current_span(f"latentserve.{method}", attributes=attributes)


def span(name: str, attributes: dict[str, Any] | None = None) -> contextlib.AbstractContextManager:
    """A child of the current span for one stage of the work (text encoding, the denoise
    loop, decoding, PNG encoding), current while the block runs."""
    if _tracer is None:
        return _NO_SPAN
    return _tracer.start_as_current_span(name, attributes=attributes)


def set_status_error(description: str) -> None:
    """Mark the current span failed (a request answered with an error)."""
    if _tracer is not None:
        trace.get_current_span().set_status(Status(StatusCode.ERROR, description))


def current() -> Span | None:
    """The current span, kept by work that goes on elsewhere (a queue) to link or parent
    spans to it later; None when tracing is off or no span is recording."""
    if _tracer is None:
        return None
    current_span = trace.get_current_span()
    return current_span if current_span.is_recording() else None


def served() -> tuple[Span, ...]:
    """The request spans the current work serves: those ``serving`` named, else the
    current span; empty when tracing is off."""
    if _tracer is None:
        return ()
    spans = _SERVED.get()
    if spans is not None:
        return spans
    own = current()
    return () if own is None else (own,)


@contextlib.contextmanager
def _serving(spans: tuple[Span, ...]) -> Iterator[None]:
    token = _SERVED.set(spans)
    try:
        yield
    finally:
        _SERVED.reset(token)


def serving(spans: Iterable[Span | None]) -> contextlib.AbstractContextManager:
    """Within the block, work serves these request spans (one denoiser call for many jobs)."""
    if _tracer is None:
        return _NO_SPAN
    return _serving(tuple(s for s in spans if s is not None))


def detach() -> None:
    """The current task works for many requests (a shared loop): it inherited the context of
    the request that started it, which must not parent the others' spans."""
    if _tracer is not None:
        otel_context.attach(otel_context.Context())
        _SERVED.set(None)


def record_wait(parent: Span, seconds: float, links: Sequence[Span] = ()) -> None:
    """A finished ``queue_wait`` span under ``parent`` that ended now, ``seconds`` long,
    linked to what it waited for (the batch that took it)."""
    if _tracer is None:
        return
    end = time.time_ns()
    wait = _tracer.start_span(
        "queue_wait",
        context=trace.set_span_in_context(parent),
        start_time=end - int(seconds * 1e9),
        links=[Link(s.get_span_context()) for s in links],
    )
    wait.end(end_time=end)


def batch_span(served_spans: Iterable[Span], attributes: dict[str, Any]) -> Span | None:
    """The span of one graph batch: a trace of its own (one batch serves many requests)
    linking to every request span it served; the caller ends it. None when off."""
    if _tracer is None:
        return None
    links = [Link(s.get_span_context()) for s in dict.fromkeys(served_spans)]
    return _tracer.start_span(
        "batch", context=otel_context.Context(), links=links, attributes=attributes
    )


def exemplar() -> dict[str, str] | None:
    """The current trace as a Prometheus exemplar's labels, for a latency observed while
    its request span is current; None when off or not sampled."""
    if _tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return {
        "trace_id": trace.format_trace_id(context.trace_id),
        "span_id": trace.format_span_id(context.span_id),
    }
