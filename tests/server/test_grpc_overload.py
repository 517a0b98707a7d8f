"""gRPC overload against a real server: past the configured number of calls in progress,
calls get RESOURCE_EXHAUSTED with retry-after and are counted, never CANCELLED unseen."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers.server_process import SERVER_TOML, ServerFactory, ServerProcess, metric
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc

LIMIT = 4
CALLS = 1500  # past gRPC core's default backlog of 1000, where calls used to be CANCELLED
# Admitted calls wait up to 1.5 s for their batch to fill, so LIMIT calls hold every slot
# while the rest arrive.
OVERLOAD_TOML = (
    SERVER_TOML.replace(
        "stream_chunk_size = 2\n", f"stream_chunk_size = 2\nmax_grpc_concurrent_rpcs = {LIMIT}\n"
    )
    + """
[models.vae-tiny]
max_queue_delay_ms = 1500
max_batch_size = 64
"""
)


@pytest.fixture(scope="module")
def server(tiny_repository: Path, start_server: ServerFactory) -> Iterator:
    with start_server(tiny_repository, "overload", OVERLOAD_TOML) as process:
        yield process


async def flood(target: str) -> tuple[collections.Counter, list, str]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GenerativeServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        request = pb.SampleRequest(model="vae-tiny", n=1, seed=0)

        async def call() -> tuple[str, tuple]:
            try:
                await stub.Sample(request, timeout=120)
            except grpc.aio.AioRpcError as error:
                return error.code().name, tuple(error.trailing_metadata() or ())
            return "OK", ()

        calls = [asyncio.ensure_future(call()) for _ in range(CALLS)]
        # Health is not the generative service: it answers while every slot is taken.
        status = await health.Check(health_pb2.HealthCheckRequest(), timeout=60)
        results = await asyncio.gather(*calls)
    codes = collections.Counter(code for code, _ in results)
    refusals = [dict(metadata) for code, metadata in results if code == "RESOURCE_EXHAUSTED"]
    return codes, refusals, health_pb2.HealthCheckResponse.ServingStatus.Name(status.status)


def test_calls_past_the_limit_are_refused_with_retry_after_and_counted(
    server: ServerProcess, http: httpx.Client
) -> None:
    before = metric(
        http, "latentserve_requests_total", protocol="grpc", method="sample", status="overloaded"
    )
    codes, refusals, health = asyncio.run(flood(server.grpc_target))
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes  # no CANCELLED, no UNKNOWN
    assert codes["OK"] >= LIMIT and codes["RESOURCE_EXHAUSTED"] >= CALLS // 2, codes
    assert all(int(r["retry-after"]) >= 1 for r in refusals)
    counted = metric(
        http, "latentserve_requests_total", protocol="grpc", method="sample", status="overloaded"
    )
    assert counted - before == codes["RESOURCE_EXHAUSTED"]
    assert health == "SERVING"
    print(f"grpc overload: {CALLS} calls at a limit of {LIMIT}: {dict(codes)}")
