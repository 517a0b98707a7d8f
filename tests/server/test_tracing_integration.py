"""Traces of a real server, exported by OTLP/HTTP (as the ``OTEL_*`` settings say) to a
receiver on loopback; and their trace ids as exemplars on ``/metrics`` in OpenMetrics."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from helpers.otlp import ReceivedSpan, Receiver, otlp_receiver
from helpers.server_process import ServerFactory, ServerProcess
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc

SPANS_WITHIN_S = 30.0


def traceparent(trace_id: str, parent_id: str) -> str:
    return f"00-{trace_id}-{parent_id}-01"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with otlp_receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def server(
    tiny_repository: Path, start_server: ServerFactory, receiver: Receiver
) -> Iterator[ServerProcess]:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "50",  # milliseconds: spans leave at once
        "OTEL_SERVICE_NAME": "latentserve-under-test",
    }
    with start_server(tiny_repository, "traced", env=env) as process:
        yield process


def _in_trace(spans: list[ReceivedSpan], trace_id: str) -> dict[str, ReceivedSpan]:
    return {s.name: s for s in spans if s.trace_id == trace_id}


def _request_traced(trace_id: str, server_span: str) -> object:
    """A condition: the trace holds the transport's server span and the service's request
    span under it, with its PNG encoding and its queue wait under that."""

    def holds(spans: list[ReceivedSpan]) -> bool:
        trace = _in_trace(spans, trace_id)
        return {server_span, "latentserve.sample", "png_encode", "queue_wait"} <= set(trace)

    return holds


def test_rest_and_grpc_calls_continue_the_callers_trace(
    server: ServerProcess, receiver: Receiver
) -> None:
    rest_trace, rest_parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    grpc_trace, grpc_parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    response = httpx.post(
        f"{server.http_url}/v1/models/vae-tiny/sample",
        json={"n": 2, "seed": 1},
        headers={"traceparent": traceparent(rest_trace, rest_parent)},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    with grpc.insecure_channel(server.grpc_url.removeprefix("grpc://")) as channel:
        stub = pb_grpc.GenerativeServiceStub(channel)
        metadata = (("traceparent", traceparent(grpc_trace, grpc_parent)),)
        reply = stub.Sample(pb.SampleRequest(model="vae-tiny", n=2, seed=1), metadata=metadata)
    assert len(reply.images) == 2

    rest_server_span = "POST /v1/models/{model}/sample"
    grpc_server_span = "latentserve.v1.GenerativeService/Sample"
    receiver.wait_for(_request_traced(rest_trace, rest_server_span), SPANS_WITHIN_S)
    receiver.wait_for(_request_traced(grpc_trace, grpc_server_span), SPANS_WITHIN_S)
    requests = []
    for trace_id, parent_id, server_span in (
        (rest_trace, rest_parent, rest_server_span),
        (grpc_trace, grpc_parent, grpc_server_span),
    ):
        trace = _in_trace(receiver.spans, trace_id)
        transport = trace[server_span]
        assert (transport.kind, transport.parent_id) == ("SERVER", parent_id)
        request = trace["latentserve.sample"]
        assert request.attributes["latentserve.model"] == "vae-tiny@2"
        assert request.service == "latentserve-under-test"
        # the request span hangs under the transport's (FastAPI's endpoint span on REST)
        ancestors = {s.span_id: s.parent_id for s in trace.values()}
        parent = request.parent_id
        while parent and parent != transport.span_id:
            parent = ancestors.get(parent, "")
        assert parent == transport.span_id
        assert trace["png_encode"].parent_id == request.span_id
        assert trace["queue_wait"].parent_id == request.span_id
        requests.append((trace_id, request.span_id))
    # each request's sampler batch: a trace of its own, linked to the request it served
    batch_links = {link for s in receiver.spans if s.name == "batch" for link in s.links}
    assert set(requests) <= batch_links
    batch_traces = {s.trace_id for s in receiver.spans if s.name == "batch"}
    assert not batch_traces & {rest_trace, grpc_trace}
    # the readiness polls that waited for the server to start are no one's request
    assert not [s.name for s in receiver.spans if s.name.endswith("/readyz")]


EXEMPLAR = re.compile(r"^latentserve_request_duration_seconds_bucket\{.*\} \S+ # \{(.*)\}", re.M)


def test_openmetrics_scrapes_show_trace_ids_as_exemplars(server: ServerProcess) -> None:
    trace_id = "5c1c63257de34c67a3b8d7a2f1c2a0f3"
    with httpx.Client(base_url=server.http_url, timeout=30) as http:
        headers = {"traceparent": traceparent(trace_id, "53995c3f42cd8ad8")}
        sampled = http.post("/v1/models/vae-tiny/sample", json={"n": 1}, headers=headers)
        assert sampled.status_code == 200, sampled.text
        accept = {"Accept": "application/openmetrics-text; version=1.0.0"}
        openmetrics = http.get("/metrics", headers=accept)
        plain = http.get("/metrics")
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    exemplars = EXEMPLAR.findall(openmetrics.text)
    assert any(f'trace_id="{trace_id}"' in labels for labels in exemplars), exemplars
    # the plain text format has no exemplars
    assert plain.headers["content-type"].startswith("text/plain")
    assert "trace_id" not in plain.text and " # {" not in plain.text
