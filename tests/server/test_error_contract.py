"""The error contract through a real server: hostile inputs get one documented code on
each transport, a message naming what was wrong, and never a 500 or an exception's text."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import grpc
import httpx
import pytest
from helpers.server_process import ServerProcess, metric
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow

# A version is ASCII digits without a leading zero; each of these once answered 500 /
# UNKNOWN or quietly meant version 1.
BAD_REFS = {
    "superscript": "vae-tiny@²",
    "arabic-indic": "vae-tiny@١",
    "leading-zero": "vae-tiny@01",
    "bare-at": "vae-tiny@",
    "5000-digits": "vae-tiny@" + "9" * 5000,
}
ERRORS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def documented_codes() -> set[str]:
    """The codes of the documented error table (the rows under ``| code | HTTP | ...``)."""
    table = ERRORS_PAGE.read_text().split("| code | HTTP | gRPC | SDK exception |", 1)[1]
    rows = table.split("\n\n", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)`", rows, re.MULTILINE))


DOCUMENTED_CODES = documented_codes()
# Exception names that must never reach a client.
LEAKS = ("Error", "Exception", "Traceback", "Unexpected", "int()", "decode")


def no_leak(message: str) -> bool:
    return not any(word in message for word in LEAKS)


@pytest.mark.parametrize("ref", BAD_REFS.values(), ids=BAD_REFS.keys())
def test_a_malformed_version_is_not_found_over_rest(http: httpx.Client, ref: str) -> None:
    path = f"/v1/models/{urllib.parse.quote(ref)}"
    for response in (http.get(path), http.post(f"{path}/sample", json={"n": 1})):
        assert response.status_code == 404, response.text
        error = response.json()["error"]
        assert error["code"] == "not_found"
        assert error["message"].startswith("model reference 'vae-tiny@"), error
        assert len(error["message"]) < 300 and no_leak(error["message"])


@pytest.mark.parametrize("ref", BAD_REFS.values(), ids=BAD_REFS.keys())
def test_a_malformed_version_is_not_found_over_grpc(
    stub: pb_grpc.GenerativeServiceStub, ref: str
) -> None:
    calls = (
        lambda: stub.GetModel(pb.GetModelRequest(model=ref), timeout=30),
        lambda: stub.Sample(pb.SampleRequest(model=ref, n=1), timeout=30),
    )
    for call in calls:
        with pytest.raises(grpc.RpcError) as refused:
            call()
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        assert refused.value.details().startswith("model reference 'vae-tiny@")
        assert no_leak(refused.value.details())


BAD_BODIES = {
    "non-utf8": (b'{"n": 1, "note": "\xff\xfe"}', "not valid UTF-8"),
    "5000-digit-seed": (b'{"n": 1, "seed": ' + b"9" * 5000 + b"}", "too many digits"),
    "nested-too-deep": (b"[" * 30_000 + b"]" * 30_000, "nested too deeply"),
}


@pytest.mark.parametrize(("body", "reason"), BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_an_unreadable_json_body_is_422_invalid_argument(
    http: httpx.Client, body: bytes, reason: str
) -> None:
    for path in ("/v1/models/vae-tiny/sample", "/v1/models/vae-tiny/encode"):
        response = http.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert (error["code"], error["field"]) == ("invalid_argument", "body")
        assert error["message"].startswith("body: ") and reason in error["message"]
        assert no_leak(error["message"])


# The generating routes read their own body (rest/params_body.py): as FastAPI reads one.
BODY_RULES = {
    "a list": ("sample", b"[1]", "application/json", "Input should be a valid dictionary"),
    "null": ("sample", b"null", "application/json", "Input should be a valid dictionary"),
    "truncated": ("interpolate", b'{"n":', "application/json", "not valid JSON"),
    "form": ("sample", b"n=1", "application/x-www-form-urlencoded", "valid dictionary"),
    "JSON sent as text": ("sample", b'{"n": 1}', "text/plain", "valid dictionary"),
    "no content type": ("interpolate", b'{"n": 1}', None, "valid dictionary"),
    "empty, prompt required": ("text-to-image", b"", "application/json", "Field required"),
}


@pytest.mark.parametrize(
    ("route", "body", "content_type", "reason"), BODY_RULES.values(), ids=BODY_RULES.keys()
)
def test_a_generating_route_takes_a_json_object_sent_as_json(
    http: httpx.Client, route: str, body: bytes, content_type: str | None, reason: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = http.post(f"/v1/models/vae-tiny/{route}", content=body, headers=headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_argument", "body")
    assert error["message"].startswith("body: ") and reason in error["message"]


def test_an_empty_sample_body_means_the_defaults(http: httpx.Client) -> None:
    for content_type in ("application/json", "application/vnd.api+json; charset=utf-8"):
        response = http.post(
            "/v1/models/vae-tiny/sample", content=b"", headers={"content-type": content_type}
        )
        assert response.status_code == 200, response.text
        assert len(response.json()["images"]) == 1
    typed = http.post(
        "/v1/models/vae-tiny/sample",
        content=b'{"n": 2}',
        headers={"content-type": "application/vnd.api+json; charset=utf-8"},
    )
    assert typed.status_code == 200 and len(typed.json()["images"]) == 2


@pytest.mark.parametrize("temperature", [1e38, 1e300, 1e-300, 0.0, -1.0])
def test_temperature_is_bounded_on_both_transports(
    http: httpx.Client, stub: pb_grpc.GenerativeServiceStub, temperature: float
) -> None:
    response = http.post("/v1/models/vae-tiny/sample", json={"n": 1, "temperature": temperature})
    assert response.status_code == 422 and response.json()["error"]["field"] == "temperature"
    if abs(temperature) > 3e38 or 0 < abs(temperature) < 1e-38:
        return  # a proto float (32-bit) cannot carry it
    with pytest.raises(grpc.RpcError) as refused:
        stub.Sample(pb.SampleRequest(model="vae-tiny", n=1, temperature=temperature), timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(refused.value.trailing_metadata())["field"] == "temperature"


def test_the_openapi_schema_states_the_bounds(http: httpx.Client) -> None:
    schema = http.get("/openapi.json").json()
    sample = schema["paths"]["/v1/models/{model}/sample"]["post"]["requestBody"]
    kinds = sample["content"]["application/json"]["schema"]["anyOf"]
    prior = next(k for k in kinds if "temperature" in k["properties"])["properties"]
    assert prior["n"]["minimum"] == 1
    assert (prior["seed"]["anyOf"][0]["minimum"], prior["seed"]["anyOf"][0]["maximum"]) == (
        0,
        2**64 - 1,
    )
    temperature = prior["temperature"]["anyOf"][0]
    assert temperature["minimum"] > 0 and 1 < temperature["maximum"] < 1e38
    images = schema["components"]["schemas"]["ImagesRequest"]["properties"]["images"]
    assert images["minItems"] == 1
    log_prob = schema["components"]["schemas"]["LogProbRequest"]["properties"]
    assert log_prob["samples"]["anyOf"][0]["minimum"] == 1


def raw_unary(channel: grpc.Channel, method: str) -> grpc.UnaryUnaryMultiCallable:
    """A unary call that sends bytes as they are, without a protobuf serializer."""
    return channel.unary_unary(f"/latentserve.v1.GenerativeService/{method}")


@pytest.mark.parametrize("payload", [b"\xff\xff\xff\xff", b"\x0a\x05ab", b"\x12\x01"])
def test_garbage_protobuf_is_invalid_argument(server: ServerProcess, payload: bytes) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        for method in ("Sample", "GetModel", "Encode"):
            with pytest.raises(grpc.RpcError) as refused:
                raw_unary(channel, method)(payload, timeout=30)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
            assert dict(refused.value.trailing_metadata())["field"] == "request"
            assert no_leak(refused.value.details()), refused.value.details()
        stream = channel.unary_stream("/latentserve.v1.GenerativeService/StreamSample")
        with pytest.raises(grpc.RpcError) as refused:
            list(stream(payload, timeout=30))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # a bidirectional call: refused at its first message that does not decode
        many = channel.stream_stream("/latentserve.v1.GenerativeService/SampleMany")
        with pytest.raises(grpc.RpcError) as refused:
            list(many(iter([payload]), timeout=30))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert dict(refused.value.trailing_metadata())["field"] == "request"


def test_refusals_are_counted_and_never_logged_as_errors(
    server: ServerProcess, http: httpx.Client
) -> None:
    labels = {"protocol": "grpc", "method": "sample", "status": "invalid_argument"}
    before = metric(http, "latentserve_requests_total", **labels)
    with grpc.insecure_channel(server.grpc_target) as channel:
        with pytest.raises(grpc.RpcError):
            raw_unary(channel, "Sample")(b"\xff\xff", timeout=30)
        stub = pb_grpc.GenerativeServiceStub(channel)
        with pytest.raises(grpc.RpcError):
            stub.GetModel(pb.GetModelRequest(model="vae-tiny@²"), timeout=30)
    http.get("/v1/models/vae-tiny@%C2%B2")
    http.post(
        "/v1/models/vae-tiny/sample", content=b"\xff", headers={"content-type": "application/json"}
    )
    assert metric(http, "latentserve_requests_total", **labels) == before + 1
    log = server.log()
    assert " ERROR " not in log and "ERROR:" not in log and "Traceback" not in log, log[-3000:]


def test_every_code_the_server_sends_is_documented(http: httpx.Client) -> None:
    answers = [
        http.get("/v1/models/nope"),
        http.get("/no/such/route"),
        http.put("/v1/models/vae-tiny/sample"),
        http.post("/v1/models/vae-tiny/sample", json={"n": 0}),
        http.post(
            "/v1/models/vae-tiny/sample",
            content=b"\xff",
            headers={"content-type": "application/json"},
        ),
        http.post("/v1/models/ae-tiny/sample", json={"n": 1}),
        http.post("/v1/models/vae-tiny/encode", json={"images": ["A" * 70_000]}),
        http.get("/v1/jobs/no-such-job"),
    ]
    for response in answers:
        assert response.status_code >= 400
        assert response.json()["error"]["code"] in DOCUMENTED_CODES, response.text
