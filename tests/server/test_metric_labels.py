"""No request field becomes a metric label: ``/metrics`` stays the same size whatever
clients send.

A warm-up makes valid calls on every route and, once each, every kind of invalid one (an
unknown model reference, job method, sampler, parameter, job id, timeout header, an
undecodable gRPC message). A flood then sends the same invalid calls with random values
(control characters, non-ASCII, kilobytes long) in every field a label could be taken from,
over REST and gRPC. Afterwards the server must expose exactly the series it had after the
warm-up: the same label values, however many distinct values clients sent.
"""

from __future__ import annotations

import contextlib
import io
import random
from collections.abc import Iterator
from urllib.parse import quote

import grpc
import httpx
import pytest
from helpers.server_process import ServerProcess
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

SERVICE = "/latentserve.v1.GenerativeService"
V2_SERVICE = "/inference.GRPCInferenceService"
# Characters a client may put in a field: control characters, quotes, separators that mean
# something in URLs, label syntax and model references, and non-ASCII.
ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    " \t\n\r\x00\x01\x1b\x7f\"'\\{}=,@#?%&;:.-_~é☃中\u200b\U0001f600"
)
FLOOD_VALUES = 12
Series = frozenset[tuple[str, tuple[tuple[str, str], ...]]]


def random_values(seed: int, count: int) -> list[str]:
    """``count`` random strings: mostly short, one in four 300 to 2,000 characters."""
    rng = random.Random(seed)
    values = []
    for _ in range(count):
        length = rng.randint(300, 2000) if rng.random() < 0.25 else rng.randint(1, 40)
        values.append("".join(rng.choice(ALPHABET) for _ in range(length)))
    return values


def header_value(value: str) -> str:
    """``value`` as printable ASCII an HTTP header can carry; never a number of seconds."""
    return "t" + "".join(c for c in value if " " <= c <= "~")[:200]


def string_field(number: int, text: str) -> bytes:
    """One protobuf string field: its tag, its length as a varint, its UTF-8 bytes."""
    data = text.encode()
    length, size = b"", len(data)
    while size > 0x7F:
        length += bytes([size & 0x7F | 0x80])
        size >>= 7
    return bytes([number << 3 | 2]) + length + bytes([size]) + data


def png() -> bytes:
    out = io.BytesIO()
    Image.new("L", (28, 28), 128).save(out, format="PNG")
    return out.getvalue()


def series(http: httpx.Client) -> Series:
    """Every (sample name, labels) pair ``/metrics`` exposes now."""
    text = http.get("/metrics").text
    return frozenset(
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    )


def label_values(snapshot: Series) -> dict[str, set[str]]:
    values: dict[str, set[str]] = {}
    for _, labels in snapshot:
        for name, value in labels:
            values.setdefault(name, set()).add(value)
    return values


def rest_calls(http: httpx.Client, value: str) -> None:
    """Every REST call with ``value`` in a field a label could be taken from."""
    image = {"images": [__import__("base64").b64encode(png()).decode()]}
    in_path = quote(value, safe="")
    for route, body in [
        ("sample", {}),
        ("text-to-image", {"prompt": "a 7"}),
        ("interpolate", {}),
        ("encode", image),
        ("log-prob", image),
        ("reconstruct", image),
    ]:
        http.post(f"/v1/models/{in_path}/{route}", json=body)
    http.get(f"/v1/models/{in_path}")
    http.post(
        f"/v1/models/{in_path}/sample", json={}, headers={"Accept": "text/event-stream"}
    ).read()
    http.post("/v1/models/vae-tiny/sample", json={"sampler": value})
    http.post("/v1/models/vae-tiny/sample", json={value: 1})
    http.post(
        "/v1/models/vae-tiny/sample",
        json={"sampler": value},
        headers={"Accept": "text/event-stream"},
    ).read()
    http.post("/v1/jobs", json={"model": value, "method": "sample"})
    http.post("/v1/jobs", json={"model": "vae-tiny", "method": value})
    http.post("/v1/jobs", json={"model": "vae-tiny", "params": {"sampler": value}})
    http.post("/v1/jobs", json={"model": "vae-tiny", "params": {value: 1}})
    http.post("/v1/jobs", json={"model": "vae-tiny", value: 1})
    http.get(f"/v1/jobs/{in_path}")
    http.get(f"/v1/jobs/{in_path}/events")
    http.delete(f"/v1/jobs/{in_path}")
    http.get(f"/v1/jobs/{in_path}/images/0")
    http.get("/v1/models/vae-tiny", headers={"X-Request-Timeout": header_value(value)})
    http.get(f"/{in_path}")
    # the OpenAI Images API on the same port
    http.post("/v1/images/generations", json={"model": value, "prompt": "a 7"})
    for field in ("size", "sampler", "user", "response_format"):
        http.post("/v1/images/generations", json={"model": "vae-tiny", "prompt": "7", field: value})
    edit = {"model": value, "prompt": "a 7"}
    http.post("/v1/images/edits", data=edit, files={"image": ("a.png", png(), "image/png")})
    # the Open Inference Protocol on the same port
    for suffix in ("", "/ready", "/config"):
        http.get(f"/v2/models/{in_path}{suffix}")
        http.get(f"/v2/models/vae-tiny/versions/{in_path}{suffix}")
    http.post(f"/v2/models/{in_path}/infer", json={"inputs": []})
    http.post("/v2/models/vae-tiny/infer", json={"inputs": [], "parameters": {"method": value}})
    http.post(f"/v2/repository/models/{in_path}/load")


def grpc_calls(channel: grpc.Channel, value: str) -> None:
    """Every gRPC call with ``value`` in a field a label could be taken from."""
    stub = pb_grpc.GenerativeServiceStub(channel)
    images = [png()]
    unary = [
        (stub.GetModel, pb.GetModelRequest(model=value)),
        (stub.Sample, pb.SampleRequest(model=value)),
        (stub.Sample, pb.SampleRequest(model="vae-tiny", sampler=value)),
        (stub.TextToImage, pb.TextToImageRequest(model=value, prompt="a 7")),
        (stub.Encode, pb.EncodeRequest(model=value, images=images)),
        (stub.LogProb, pb.LogProbRequest(model=value, images=images)),
        (stub.Reconstruct, pb.ReconstructRequest(model=value, images=images)),
        (stub.SubmitJob, pb.JobRequest(sample=pb.SampleRequest(model=value))),
        (stub.SubmitJob, pb.JobRequest(sample=pb.SampleRequest(model="vae-tiny", sampler=value))),
        (stub.SubmitJob, pb.JobRequest(text_to_image=pb.TextToImageRequest(model=value))),
        (stub.GetJob, pb.JobRef(job_id=value)),
        (stub.CancelJob, pb.JobRef(job_id=value)),
    ]
    streams = [
        (stub.StreamSample, pb.SampleRequest(model=value)),
        (stub.SampleEvents, pb.SampleRequest(model=value)),
        (stub.SampleEvents, pb.SampleRequest(model="vae-tiny", sampler=value)),
        (stub.TextToImageEvents, pb.TextToImageRequest(model=value, prompt="a 7")),
        (stub.Interpolate, pb.InterpolateRequest(model=value)),
        (stub.WatchJob, pb.JobRef(job_id=value)),
    ]
    for call, request in unary:
        with pytest.raises(grpc.RpcError):
            call(request, timeout=30)
    for call, request in streams:
        with pytest.raises(grpc.RpcError):
            list(call(request, timeout=30))
    # Bytes that are no protobuf message (wire type 7 does not exist), to every method.
    garbage = b"\x07" + value.encode()
    for name in ("GetModel", "Sample", "SubmitJob", "GetJob", "Encode"):
        raw = channel.unary_unary(f"{SERVICE}/{name}")
        with pytest.raises(grpc.RpcError):
            raw(garbage, timeout=30)
    # The Open Inference Protocol's service, its requests encoded here: importing its stubs
    # beside tritonclient's (other modules) registers package "inference" twice.
    for rpc, request in [
        ("ModelMetadata", string_field(1, value)),
        ("ModelReady", string_field(1, value)),
        ("ModelInfer", string_field(1, value)),
        ("ModelInfer", string_field(1, "vae-tiny") + string_field(2, value)),
    ]:
        call = channel.unary_unary(f"{V2_SERVICE}/{rpc}")
        with contextlib.suppress(grpc.RpcError):  # an unknown model may just be "not ready"
            call(request, timeout=30)
    unknown = channel.unary_unary(f"{SERVICE}/{quote(value, safe='')[:100]}")
    with pytest.raises(grpc.RpcError):
        unknown(b"", timeout=30)


def valid_calls(http: httpx.Client, channel: grpc.Channel) -> None:
    """One successful call of each kind, so the series of answered requests exist."""
    image = {"images": [__import__("base64").b64encode(png()).decode()]}
    assert http.get("/v1/models").status_code == 200
    assert http.get("/v1/models/vae-tiny").status_code == 200
    assert http.post("/v1/models/vae-tiny/sample", json={"n": 1, "seed": 1}).status_code == 200
    assert http.post("/v1/models/vae-tiny/encode", json=image).status_code == 200
    assert http.post("/v1/models/vae-tiny/log-prob", json=image).status_code == 200
    assert http.post("/v1/models/vae-tiny/reconstruct", json=image).status_code == 200
    interpolated = http.post("/v1/models/vae-tiny/interpolate", json={"frames": 2})
    assert interpolated.status_code == 200
    job = http.post("/v1/jobs", json={"model": "vae-tiny", "params": {"seed": 1}})
    assert job.status_code == 202
    events = http.get(f"/v1/jobs/{job.json()['job_id']}/events").text
    assert "event: result" in events
    assert http.get(f"/v1/jobs/{job.json()['job_id']}").json()["state"] == "done"
    assert http.delete(f"/v1/jobs/{job.json()['job_id']}").status_code == 200
    stub = pb_grpc.GenerativeServiceStub(channel)
    stub.GetModel(pb.GetModelRequest(model="vae-tiny"), timeout=30)
    stub.Sample(pb.SampleRequest(model="vae-tiny", n=1, seed=1), timeout=30)
    list(stub.StreamSample(pb.SampleRequest(model="vae-tiny", n=1), timeout=30))


@pytest.fixture
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_url.removeprefix("grpc://")) as channel:
        yield channel


def test_random_request_fields_add_no_metric_series(
    http: httpx.Client, channel: grpc.Channel
) -> None:
    valid_calls(http, channel)
    for value in random_values(seed=1, count=2):
        rest_calls(http, value)
        grpc_calls(channel, value)
    warmed_up = series(http)

    flood = random_values(seed=2, count=FLOOD_VALUES)
    for value in flood:
        rest_calls(http, value)
        grpc_calls(channel, value)
    flooded = series(http)

    new_values = {
        name: sorted(repr(v)[:60] for v in values - label_values(warmed_up).get(name, set()))
        for name, values in label_values(flooded).items()
    }
    assert flooded == warmed_up, f"the flood added label values: {new_values}"
    assert len(flooded) == len(warmed_up)
    # The flood was counted (under fixed labels), not dropped.
    assert any(name == "latentserve_requests_total" for name, _ in warmed_up)
