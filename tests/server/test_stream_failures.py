"""A stream whose work fails half-way (after it sent some events or chunks) wakes its
reader and ends in an error on both transports, never hangs, and tells the client nothing
of the exception's own text. Served by the real REST app and gRPC server over fake graphs
that fail on a chosen call."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import httpx
from helpers.fakes import (
    GRAPH_SECRET,
    Recorder,
    fake_diffusion_manifest,
    fake_manifest,
    fake_service,
)
from helpers.transports import serving
from latentserve.clients.sse import parse_sse
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc

DEADLINE_S = 20  # a reader left hanging fails here instead of blocking the suite
STEPS = 6
FAILING_STEP = 3


def service_with_failing_graphs(tmp_path: Path) -> tuple:
    """The service, and the fake denoiser and sampler (``fail_in`` arms them)."""
    manifests = [
        fake_diffusion_manifest("fake-ddpm"),
        fake_manifest("fake-vae", max_n=16, max_batch_size=2, max_queue_delay_ms=1),
    ]
    service, graphs = fake_service(
        tmp_path, manifests, max_concurrent_batches=1, stream_chunk_size=2
    )
    return service, graphs["fake-ddpm@1"]["denoiser"], graphs["fake-vae@1"]["sampler"]


def fail_in(graph: Recorder, calls: int) -> None:
    """Make ``graph``'s ``calls``-th call from now raise."""
    graph.fail_calls = {graph.calls + calls}


async def rest_events(http_url: str) -> list[tuple[str, dict]]:
    body = {"n": 1, "steps": STEPS, "seed": 0}
    headers = {"Accept": "text/event-stream"}
    async with (
        httpx.AsyncClient(base_url=http_url, timeout=DEADLINE_S) as http,
        http.stream("POST", "/v1/models/fake-ddpm/sample", json=body, headers=headers) as reply,
    ):
        assert reply.status_code == 200
        lines = [line async for line in reply.aiter_lines()]
    return [(event.event, json.loads(event.data)) for event in parse_sse(lines)]


async def grpc_events(stub: pb_grpc.GenerativeServiceStub) -> list[pb.JobEvent]:
    request = pb.SampleRequest(model="fake-ddpm", n=1, seed=0, steps=STEPS)
    return [event async for event in stub.SampleEvents(request, timeout=DEADLINE_S)]


async def grpc_chunks(stub: pb_grpc.GenerativeServiceStub) -> tuple[list, grpc.aio.AioRpcError]:
    chunks = []
    call = stub.StreamSample(pb.SampleRequest(model="fake-vae", n=6, seed=0), timeout=DEADLINE_S)
    try:
        async for chunk in call:
            chunks.append(chunk)
    except grpc.aio.AioRpcError as exc:
        return chunks, exc
    raise AssertionError(f"the stream ended without an error after {len(chunks)} chunks")


def test_a_job_failing_half_way_ends_its_event_streams_in_an_error(tmp_path: Path) -> None:
    service, denoiser, _ = service_with_failing_graphs(tmp_path)

    async def main() -> tuple:
        async with serving(service) as endpoints:
            fail_in(denoiser, FAILING_STEP)
            over_rest = await asyncio.wait_for(rest_events(endpoints.http_url), DEADLINE_S)
            async with grpc.aio.insecure_channel(endpoints.grpc_target) as channel:
                stub = pb_grpc.GenerativeServiceStub(channel)
                fail_in(denoiser, FAILING_STEP)
                over_grpc = await asyncio.wait_for(grpc_events(stub), DEADLINE_S)
            return over_rest, over_grpc

    over_rest, over_grpc = asyncio.run(main())
    kinds = [kind for kind, _ in over_rest]
    assert "progress" in kinds and kinds[-1] == "error", kinds
    assert over_rest[-1][1]["code"] == "internal"
    assert GRAPH_SECRET not in json.dumps(over_rest)
    grpc_kinds = [event.WhichOneof("event") for event in over_grpc]
    assert "progress" in grpc_kinds and grpc_kinds[-1] == "error", grpc_kinds
    assert over_grpc[-1].error.code == "internal"
    assert GRAPH_SECRET not in str(over_grpc)


def test_a_chunk_stream_failing_half_way_ends_in_an_error_after_its_first_chunk(
    tmp_path: Path,
) -> None:
    service, _, sampler = service_with_failing_graphs(tmp_path)
    fail_in(sampler, 2)  # the second chunk of the stream

    async def main() -> tuple:
        async with (
            serving(service) as endpoints,
            grpc.aio.insecure_channel(endpoints.grpc_target) as channel,
        ):
            stub = pb_grpc.GenerativeServiceStub(channel)
            return await asyncio.wait_for(grpc_chunks(stub), DEADLINE_S)

    chunks, error = asyncio.run(main())
    assert [len(chunk.images) for chunk in chunks] == [2]  # the first chunk got out
    assert error.code() == grpc.StatusCode.INTERNAL
    assert GRAPH_SECRET not in (error.details() or "")
