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
from helpers.server_process import SERVER_TOML, ServerFactory, ServerProcess, metric, until
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


async def v2_calls_while_native_calls_hold_every_slot(
    target: str, http_url: str
) -> tuple[list[str], list[str], collections.Counter]:
    """LIMIT native calls (each held while its batch fills), then a few Open Inference
    Protocol calls once those are in progress, then a flood of them."""
    from tritonclient.grpc import service_pb2 as v2
    from tritonclient.grpc import service_pb2_grpc as v2_grpc

    request = v2.ModelInferRequest(
        model_name="vae-tiny",
        inputs=[
            v2.ModelInferRequest.InferInputTensor(
                name="n",
                datatype="INT64",
                shape=[1],
                contents=v2.InferTensorContents(int64_contents=[1]),
            )
        ],
        parameters={"method": v2.InferParameter(string_param="sample")},
    )
    async with grpc.aio.insecure_channel(target) as channel:
        native = pb_grpc.GenerativeServiceStub(channel)
        stub = v2_grpc.GRPCInferenceServiceStub(channel)

        async def infer() -> tuple[str, str]:
            try:
                await stub.ModelInfer(request, timeout=120)
            except grpc.aio.AioRpcError as error:
                return error.code().name, error.details() or ""
            return "OK", ""

        held = [
            asyncio.ensure_future(native.Sample(pb.SampleRequest(model="vae-tiny"), timeout=120))
            for _ in range(LIMIT)
        ]
        with httpx.Client(base_url=http_url, timeout=30) as http:
            in_flight = "latentserve_requests_in_flight"
            await asyncio.to_thread(
                until, lambda: metric(http, in_flight, protocol="grpc") >= LIMIT
            )
        while_held = await asyncio.gather(*(infer() for _ in range(3)))
        await asyncio.gather(*held)
        flooded = await asyncio.gather(*(infer() for _ in range(300)))
    return (
        [code for code, _ in while_held],
        [d for _, d in while_held],
        collections.Counter(code for code, _ in flooded),
    )


def test_open_inference_protocol_calls_share_the_limit(
    server: ServerProcess, http: httpx.Client
) -> None:
    def refused() -> float:
        return metric(http, "latentserve_requests_total", protocol="v2-grpc", status="overloaded")

    before = refused()
    codes, details, flooded = asyncio.run(
        v2_calls_while_native_calls_hold_every_slot(server.grpc_target, server.http_url)
    )
    assert codes == ["RESOURCE_EXHAUSTED"] * 3, (codes, details)
    assert all(f"{LIMIT} calls are in progress" in d for d in details), details
    assert set(flooded) <= {"OK", "RESOURCE_EXHAUSTED"}, flooded
    assert flooded["OK"] >= LIMIT and flooded["RESOURCE_EXHAUSTED"] >= 100, flooded
    assert refused() - before == 3 + flooded["RESOURCE_EXHAUSTED"]


async def open_sample_many_calls_then_call(target: str) -> tuple[list[str], list[str], str]:
    """LIMIT SampleMany calls, each answered once and then kept open; then a unary Sample
    and a further SampleMany while they are open, and a Sample once they have ended."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GenerativeServiceStub(channel)
        release = asyncio.Event()

        async def one_request_then_wait():  # noqa: ANN202 - an async generator of requests
            yield pb.SampleManyRequest(id=0, request=pb.SampleRequest(model="vae-tiny"))
            await release.wait()

        calls = [stub.SampleMany(one_request_then_wait(), timeout=60) for _ in range(LIMIT)]
        answers = [(await call.read()).WhichOneof("result") for call in calls]

        async def code_of(rpc: object) -> str:
            try:
                await rpc  # type: ignore[misc]
            except grpc.aio.AioRpcError as error:
                return error.code().name
            return "OK"

        async def sample_many_code() -> str:
            try:
                async for _ in stub.SampleMany(one_request_then_wait(), timeout=60):
                    pass
            except grpc.aio.AioRpcError as error:
                return error.code().name
            return "OK"

        while_open = [
            await code_of(stub.Sample(pb.SampleRequest(model="vae-tiny"), timeout=60)),
            await sample_many_code(),
        ]
        release.set()
        for call in calls:
            await call.code()
        after = await code_of(stub.Sample(pb.SampleRequest(model="vae-tiny"), timeout=60))
    return answers, while_open, after


def test_open_sample_many_calls_count_against_the_limit(server: ServerProcess) -> None:
    """A SampleMany call holds one of the max_grpc_concurrent_rpcs slots for as long as it
    is open, however many requests it carries, like any call in progress."""
    answers, while_open, after = asyncio.run(open_sample_many_calls_then_call(server.grpc_target))
    assert answers == ["response"] * LIMIT
    assert while_open == ["RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"]
    assert after == "OK"
