"""Error answers repeat at most a short prefix of what a client sent, on both transports.

A value a message names is cut to 64 characters and "…"; an id that is not of the job-id
form is refused as not found without being repeated. Over gRPC this is what keeps a huge
field from turning NOT_FOUND into the client's RESOURCE_EXHAUSTED (status details must fit
its metadata limit).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from helpers.server_process import SERVER_TOML, ServerFactory, ServerProcess
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc

SHOWN = 64
# Requests up to 4 MiB, so a 1 MB field reaches the handlers instead of gRPC's size limit.
CONFIG = SERVER_TOML.replace("max_body_bytes = 65536", "max_body_bytes = 4194304")
SMALL = 400  # bytes: more than any error body or status details this module provokes


@pytest.fixture(scope="module")
def server(tiny_repository: Path, start_server: ServerFactory) -> Iterator[ServerProcess]:
    with start_server(tiny_repository, "error_echo", config=CONFIG) as process:
        yield process


def cut(text: str) -> str:
    """What an error message shows of ``text``: its first 64 characters and "…"."""
    return text[:SHOWN] + "…"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/jobs/{}"), ("GET", "/v1/jobs/{}/events"), ("DELETE", "/v1/jobs/{}")],
)
def test_a_10kb_job_id_gets_a_small_404_that_does_not_repeat_it(
    http: httpx.Client, method: str, path: str
) -> None:
    job_id = "j" * 10_000
    response = http.request(method, path.format(job_id))
    assert response.status_code == 404
    assert len(response.content) < SMALL, len(response.content)
    error = response.json()["error"]
    assert error["code"] == "not_found"
    assert "jjjj" not in error["message"]


def test_an_unknown_id_of_the_job_id_form_is_named(http: httpx.Client) -> None:
    job_id = "0123456789abcdef" * 2
    response = http.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 404
    assert job_id in response.json()["error"]["message"]


@pytest.mark.parametrize("rpc", ["GetJob", "CancelJob", "WatchJob"])
def test_a_1mb_job_id_over_grpc_is_not_found_with_short_details(
    stub: pb_grpc.GenerativeServiceStub, rpc: str
) -> None:
    call = getattr(stub, rpc)
    with pytest.raises(grpc.RpcError) as raised:
        answer = call(pb.JobRef(job_id="j" * 1_000_000), timeout=30)
        list(answer) if rpc == "WatchJob" else answer
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND, raised.value.details()
    assert len(raised.value.details()) < SMALL
    assert "jjjj" not in raised.value.details()


def test_a_long_model_name_in_a_path_is_shown_cut(http: httpx.Client) -> None:
    name = "m" * 5000
    response = http.get(f"/v1/models/{name}")
    assert response.status_code == 404
    assert len(response.content) < SMALL
    message = response.json()["error"]["message"]
    assert cut(name) in message and name[: SHOWN + 1] not in message


def test_a_1mb_model_name_over_grpc_is_shown_cut(stub: pb_grpc.GenerativeServiceStub) -> None:
    name = "m" * 1_000_000
    with pytest.raises(grpc.RpcError) as raised:
        stub.Sample(pb.SampleRequest(model=name), timeout=30)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND, raised.value.details()
    assert cut(name) in raised.value.details()
    assert len(raised.value.details()) < SMALL


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "vae-tiny", "method": "x" * 100_000}, "method"),
        ({"model": "vae-tiny", "k" * 100_000: 1}, cut("k" * 100_000)),
        ({"model": "vae-tiny", "params": {"k" * 100_000: 1}}, cut("k" * 100_000)),
        ({"model": "vae-tiny@1" + "9" * 100_000}, None),
    ],
)
def test_long_values_in_a_job_request_are_shown_cut(
    http: httpx.Client, body: dict, field: str | None
) -> None:
    response = http.post("/v1/jobs", json=body)
    assert response.status_code in (404, 422), response.text[:200]
    assert len(response.content) < SMALL + 2 * len(field or ""), response.text[:600]
    assert response.json()["error"]["field"] == field


def test_a_long_field_name_over_grpc_metadata_is_cut(
    stub: pb_grpc.GenerativeServiceStub,
) -> None:
    # a long sampler is the value a diffusion model would echo; vae-tiny refuses the field
    with pytest.raises(grpc.RpcError) as raised:
        stub.Sample(pb.SampleRequest(model="vae-tiny", sampler="s" * 1_000_000), timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(raised.value.details()) < SMALL
    assert dict(raised.value.trailing_metadata())["field"] == "sampler"


def test_a_long_timeout_header_is_shown_cut(http: httpx.Client) -> None:
    value = "t" * 8000
    response = http.get("/v1/models", headers={"X-Request-Timeout": value})
    assert response.status_code == 422
    assert cut(value) in response.json()["error"]["message"]
    assert len(response.content) < SMALL
