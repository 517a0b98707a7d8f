"""Traces of the real service, pipeline, step engine and batchers (over fake graphs), caught
by the OpenTelemetry SDK's in-memory exporter; and which ``OTEL_*`` settings turn them on."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.text_model import MODEL, make_service
from latentserve.server import tracing
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_text

# Two callers' W3C trace contexts: trace id, parent span id, sampled.
CALLERS = {
    "a red circle": ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"),
    "a blue square": ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"),
}
STEPS = 20


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.install(None)
        provider.shutdown()


def _traced_text_to_image(tmp_path: Path) -> dict[str, str]:
    """Two text-to-image requests at once, each under its caller's ``traceparent``; returns
    the OpenMetrics exposition of the service's metrics afterwards."""
    service, _ = make_service(tmp_path)

    async def call(prompt: str) -> None:
        trace_id, parent_id = CALLERS[prompt]
        carrier = {"traceparent": f"00-{trace_id}-{parent_id}-01"}
        token = otel_context.attach(TraceContextTextMapPropagator().extract(carrier))
        try:
            params = {"prompt": prompt, "n": 2, "seed": 1, "steps": STEPS}
            await service.generate(MODEL, "text_to_image", params, "test")
        finally:
            otel_context.detach(token)

    async def main() -> None:
        await asyncio.gather(*(call(prompt) for prompt in CALLERS))
        await service.close()

    asyncio.run(main())
    return {"metrics": openmetrics_text(service.metrics.registry).decode()}


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> dict[str, ReadableSpan]:
    return {
        s.name: s
        for s in spans
        if s.parent is not None and s.parent.span_id == parent.context.span_id
    }


def test_a_request_traces_its_stages_under_the_callers_trace(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    exposition = _traced_text_to_image(tmp_path)
    finished = list(spans.get_finished_spans())
    requests = [s for s in finished if s.name == "latentserve.text_to_image"]
    assert len(requests) == 2
    denoise_spans = {}
    for request in requests:
        # the caller's trace goes on: same trace id, the caller's span as parent
        trace_id = format(request.context.trace_id, "032x")
        parent_id = format(request.parent.span_id, "016x")
        prompt = next(p for p, ids in CALLERS.items() if ids == (trace_id, parent_id))
        assert request.attributes["latentserve.model"] == f"{MODEL}@1"
        stages = _children(finished, request)
        assert {"text_encode", "denoise", "decode", "png_encode"} <= set(stages), stages
        denoise = stages["denoise"]
        assert denoise.attributes["latentserve.steps"] == STEPS
        # the step count is an attribute: no span per step
        assert set(_children(finished, denoise)) == {"queue_wait"}
        assert all(s.context.trace_id == request.context.trace_id for s in stages.values())
        # waits in the graphs' queues hang under the stage that queued, linked to the batch
        waits = [s for s in finished if s.name == "queue_wait" and s.links]
        assert any(w.parent.span_id == stages["decode"].context.span_id for w in waits)
        denoise_spans[prompt] = denoise.context.span_id
    batches = [s for s in finished if s.name == "batch"]
    denoiser_batches = [s for s in batches if s.attributes["latentserve.graph"] == "denoiser"]
    # the two jobs stepped together: one denoiser batch links to both jobs' denoise spans
    shared = [
        b
        for b in denoiser_batches
        if {link.context.span_id for link in b.links} >= set(denoise_spans.values())
    ]
    assert shared, [[link.context.span_id for link in b.links] for b in denoiser_batches]
    # a batch is a trace of its own, not a child of any one request
    assert all(b.parent is None for b in batches)
    request_traces = {r.context.trace_id for r in requests}
    assert {s.name for s in finished if s.context.trace_id not in request_traces} == {"batch"}
    # a request's trace does not grow with its steps
    for trace_id in request_traces:
        assert len([s for s in finished if s.context.trace_id == trace_id]) < STEPS
    assert {b.context.trace_id for b in batches}.isdisjoint({r.context.trace_id for r in requests})
    assert sum(b.attributes["latentserve.batch_items"] for b in shared) >= 2 * 2
    # and the latency histograms carry the requests' trace ids as exemplars (a bucket
    # keeps its latest one)
    for histogram in ("request_duration_seconds", "job_duration_seconds"):
        exemplars = re.findall(
            rf'latentserve_{histogram}_bucket{{.*}} \S+ # {{.*trace_id="(\w+)".*}}',
            exposition["metrics"],
        )
        assert exemplars and set(exemplars) <= {t for t, _ in CALLERS.values()}, histogram


def test_callers_traces_leave_no_mark_while_tracing_is_off(tmp_path: Path) -> None:
    assert not tracing.enabled()
    # the callers' trace contexts are current in their requests, yet no exemplar is kept
    exposition = _traced_text_to_image(tmp_path)
    assert "trace_id" not in exposition["metrics"]


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ["otlp_proto_http"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://h:4318/v1/traces"}, ["otlp_proto_http"]),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp_proto_http"]),
        ({"OTEL_TRACES_EXPORTER": "console,otlp"}, ["console", "otlp_proto_http"]),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            ["otlp_proto_grpc"],
        ),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://h"}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}, []),
    ],
)
def test_the_otel_settings_choose_the_exporters(environ: dict[str, str], names: list[str]) -> None:
    assert tracing.exporter_names(environ) == names


def test_an_unknown_otlp_protocol_is_refused_by_name() -> None:
    environ = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"}
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_PROTOCOL.*carrier-pigeon"):
        tracing.exporter_names(environ)
