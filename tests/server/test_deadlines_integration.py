"""Client deadlines through the real server: a request still queued when its gRPC deadline
or ``X-Request-Timeout`` passes is dropped before it computes and answered
DEADLINE_EXCEEDED / 504; the metrics show it never reached the graph."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from helpers.server_process import ServerFactory, ServerProcess, metric, until
from latentserve.clients import DeadlineExceededError, connect
from latentserve.server.codecs import encode_base64, encode_png
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow

# One batch at a time, and a first request waits 3 s for company: whatever comes after it
# stays queued for seconds, far past the short deadlines below.
SERVER_TOML = """
[models.ae-tiny]
max_queue_delay_ms = 3000
max_batch_size = 64
max_concurrent_batches = 1

[models.vae-tiny]
max_queue_delay_ms = 3000
max_batch_size = 64
max_concurrent_batches = 1
"""
PNG = encode_png(np.zeros((28, 28, 1), np.uint8))
ENCODE = "/v1/models/ae-tiny/encode"


@pytest.fixture(scope="module")
def server(tiny_repository: Path, start_server: ServerFactory) -> Iterator[ServerProcess]:
    with start_server(tiny_repository, "deadlines", SERVER_TOML) as process:
        yield process


def computed(http: httpx.Client, model: str, graph: str) -> float:
    """Items the graph has computed so far."""
    return metric(http, "latentserve_batch_items_sum", model=model, graph=graph)


def dropped(http: httpx.Client, model: str, queue: str) -> float:
    return metric(
        http, "latentserve_queue_drops_total", model=model, queue=queue, reason="deadline"
    )


def in_flight(http: httpx.Client, protocol: str) -> float:
    return metric(http, "latentserve_requests_in_flight", protocol=protocol)


def test_a_rest_request_past_its_timeout_header_is_dropped_uncomputed(
    server: ServerProcess, http: httpx.Client
) -> None:
    items, drops = computed(http, "ae-tiny@1", "encoder"), dropped(http, "ae-tiny@1", "encoder")
    body = {"images": [encode_base64(PNG)]}
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(httpx.post, server.http_url + ENCODE, json=body, timeout=60)
        until(lambda: in_flight(http, "rest") >= 1)  # queued, its batch window open
        late = http.post(ENCODE, json=body, headers={"X-Request-Timeout": "0.3"})
        assert late.status_code == 504, late.text
        assert late.json()["error"]["code"] == "deadline_exceeded"
        assert first.result().status_code == 200
    until(lambda: dropped(http, "ae-tiny@1", "encoder") == drops + 1)
    assert computed(http, "ae-tiny@1", "encoder") == items + 1  # the first request only
    answered = metric(
        http, "latentserve_requests_total", protocol="rest", status="deadline_exceeded"
    )
    assert answered >= 1


def test_a_grpc_request_past_its_deadline_is_dropped_uncomputed(
    server: ServerProcess, http: httpx.Client, stub: pb_grpc.GenerativeServiceStub
) -> None:
    items, drops = computed(http, "ae-tiny@1", "encoder"), dropped(http, "ae-tiny@1", "encoder")
    request = pb.EncodeRequest(model="ae-tiny", images=[PNG])
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(stub.Encode, request, timeout=60)
        until(lambda: in_flight(http, "grpc") >= 1)
        with pytest.raises(grpc.RpcError) as late:
            stub.Encode(request, timeout=0.3)
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert first.result().model == "ae-tiny@1"
    until(lambda: dropped(http, "ae-tiny@1", "encoder") == drops + 1)
    assert computed(http, "ae-tiny@1", "encoder") == items + 1


def test_a_job_past_its_timeout_header_fails_before_computing(http: httpx.Client) -> None:
    items, drops = computed(http, "vae-tiny@2", "sampler"), dropped(http, "vae-tiny@2", "sampler")
    submitted = http.post(
        "/v1/jobs",
        json={"model": "vae-tiny", "params": {"n": 2, "seed": 0}},
        headers={"X-Request-Timeout": "0.3"},
    )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]
    until(lambda: http.get(f"/v1/jobs/{job_id}").json()["state"] == "failed")
    assert http.get(f"/v1/jobs/{job_id}").json()["error"]["code"] == "deadline_exceeded"
    until(lambda: dropped(http, "vae-tiny@2", "sampler") == drops + 1)
    assert computed(http, "vae-tiny@2", "sampler") == items


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_the_sdks_timeout_is_the_servers_deadline(
    server: ServerProcess, http: httpx.Client, transport: str
) -> None:
    drops = dropped(http, "ae-tiny@1", "encoder")
    url = server.http_url if transport == "rest" else server.grpc_url
    with connect(url, timeout=0.3) as client, pytest.raises(DeadlineExceededError):
        client.encode("ae-tiny", [np.zeros((28, 28), np.uint8)])  # waits 3 s to batch
    until(lambda: dropped(http, "ae-tiny@1", "encoder") == drops + 1)


def test_a_sample_past_its_timeout_header_is_504_before_computing(http: httpx.Client) -> None:
    # .../sample is dispatched without FastAPI's dependencies (rest/lean.py): the deadline
    # must still reach the queue
    items, drops = computed(http, "vae-tiny@2", "sampler"), dropped(http, "vae-tiny@2", "sampler")
    response = http.post(
        "/v1/models/vae-tiny/sample", json={"n": 1}, headers={"X-Request-Timeout": "0.3"}
    )
    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "deadline_exceeded"
    until(lambda: dropped(http, "vae-tiny@2", "sampler") == drops + 1)
    assert computed(http, "vae-tiny@2", "sampler") == items


@pytest.mark.parametrize("value", ["soon", "0", "-2", "1e12"])
@pytest.mark.parametrize(
    ("path", "body"),
    [(ENCODE, {"images": [encode_base64(PNG)]}), ("/v1/models/vae-tiny/sample", {"n": 1})],
    ids=["encode", "sample"],
)
def test_a_bad_timeout_header_is_422_naming_it(
    http: httpx.Client, value: str, path: str, body: dict
) -> None:
    response = http.post(path, json=body, headers={"X-Request-Timeout": value})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "X-Request-Timeout"


def test_requests_within_their_deadline_are_answered(
    http: httpx.Client, stub: pb_grpc.GenerativeServiceStub
) -> None:
    body = {"images": [encode_base64(PNG)]}
    response = http.post(ENCODE, json=body, headers={"X-Request-Timeout": "60"})
    assert response.status_code == 200, response.text
    assert stub.Encode(pb.EncodeRequest(model="ae-tiny", images=[PNG]), timeout=60).latents
