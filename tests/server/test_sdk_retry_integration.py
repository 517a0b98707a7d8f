"""The SDK tries a refused call again after the delay the server names: a server that
admits one job at a time refuses a second (429 + Retry-After, RESOURCE_EXHAUSTED +
grpc-retry-pushback-ms); once the first is cancelled, the retry is served. Without
retries the refusal is raised at once."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest
from helpers.server_process import ServerFactory, ServerProcess, metric, until
from latentserve.clients import NO_RETRY, OverloadedError, Retry, connect
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow

MODEL = "ddpm-tiny"
# Holds the server's only job slot until the test cancels it.
LONG = {"n": 64, "steps": 100, "sampler": "ddpm"}
SERVER_TOML = f"""
max_jobs = 1
[models.{MODEL}]
max_batch_size = 2
max_concurrent_batches = 1
"""


@pytest.fixture(scope="module")
def server(diffusion_repository: Path, start_server: ServerFactory) -> Iterator:
    with start_server(diffusion_repository, "retry", config=SERVER_TOML) as process:
        yield process


def hold(http: httpx.Client) -> str:
    """Take the server's only job slot; the test cancels the job to free it."""
    submitted = http.post("/v1/jobs", json={"model": MODEL, "params": LONG})
    assert submitted.status_code == 202, submitted.text
    return submitted.json()["job_id"]


def refusals(http: httpx.Client, protocol: str) -> float:
    return metric(http, "latentserve_requests_total", protocol=protocol, status="overloaded")


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_a_refused_call_is_served_by_its_retry_once_the_server_has_room(
    server: ServerProcess, http: httpx.Client, transport: str
) -> None:
    url = server.http_url if transport == "rest" else server.grpc_url
    protocol = "rest" if transport == "rest" else "grpc"
    holder = hold(http)
    before = refusals(http, protocol)
    retry = Retry(attempts=4, max_wait_s=5.0)
    with connect(url, timeout=60, retry=retry) as client, ThreadPoolExecutor(1) as pool:
        call = pool.submit(client.sample, MODEL, n=1, seed=3, steps=2, sampler="ddim")
        until(lambda: refusals(http, protocol) > before)  # the first try was refused
        http.delete(f"/v1/jobs/{holder}")
        result = call.result(timeout=60)
    assert result.seed == 3 and len(result.images) == 1


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_without_retries_the_refusal_is_raised_with_its_delay(
    server: ServerProcess, http: httpx.Client, transport: str
) -> None:
    url = server.http_url if transport == "rest" else server.grpc_url
    holder = hold(http)
    try:
        with (
            connect(url, timeout=60, retry=NO_RETRY) as client,
            pytest.raises(OverloadedError) as refused,
        ):
            client.sample(MODEL, n=1, seed=3, steps=2)
        assert refused.value.retry_after_s is not None and refused.value.retry_after_s >= 1
    finally:
        http.delete(f"/v1/jobs/{holder}")


def test_grpc_refusals_carry_the_standard_pushback_trailer(
    server: ServerProcess, http: httpx.Client
) -> None:
    holder = hold(http)
    try:
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = pb_grpc.GenerativeServiceStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.Sample(pb.SampleRequest(model=MODEL, n=1, steps=2), timeout=30)
    finally:
        http.delete(f"/v1/jobs/{holder}")
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(refused.value.trailing_metadata())
    assert int(trailers["grpc-retry-pushback-ms"]) == 1000 * int(trailers["retry-after"])
