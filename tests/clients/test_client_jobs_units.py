"""SDK pieces of typed parameters and job events that need no server: the SSE parser,
parameter plumbing, the wire forms of events and jobs, and the CLI's parameter options."""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys

import grpc
import pytest
from latentserve.clients import (
    Accepted,
    InvalidArgumentError,
    JobCancelledError,
    JobNotFoundError,
    ModelNotFoundError,
    OverloadedError,
    Preview,
    Progress,
    Queued,
    Result,
    ServerError,
)
from latentserve.clients import cli as client_cli
from latentserve.clients.errors import from_code, from_grpc, from_http
from latentserve.clients.grpc_client import event_from_proto, job_info_from_proto, sample_request
from latentserve.clients.params import sample_params
from latentserve.clients.rest import event_from_sse, job_info_from_json
from latentserve.clients.sse import ServerSentEvent, parse_sse
from latentserve.v1 import generative_pb2 as pb
from PIL import Image


def _png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (2, 2), color=value).save(buffer, format="PNG")
    return buffer.getvalue()


def _b64(value: int) -> str:
    return base64.b64encode(_png(value)).decode("ascii")


# -- Server-Sent Events ---------------------------------------------------------------------


def test_sse_dispatches_named_events_on_blank_lines() -> None:
    lines = ["event: progress", 'data: {"step":1}', "", "event: result", "data: {}", ""]
    assert list(parse_sse(lines)) == [
        ServerSentEvent("progress", '{"step":1}'),
        ServerSentEvent("result", "{}"),
    ]


def test_sse_joins_data_lines_and_follows_the_field_rules() -> None:
    lines = [
        ": a comment",
        "data:first",  # no space after the colon
        "data:  second",  # only one leading space is stripped
        "data",  # a field name alone: empty value
        "id: 7",  # the last event id, kept for resuming
        "retry: 10",  # fields the SDK does not use are ignored
        "",
        "data: next",  # the id holds until another id: line
        "",
    ]
    assert list(parse_sse(lines)) == [
        ServerSentEvent("message", "first\n second\n", "7"),
        ServerSentEvent("message", "next", "7"),
    ]


def test_sse_skips_events_without_data_and_drops_a_cut_off_event() -> None:
    lines = ["event: lonely", "", "", "event: late", "data: never dispatched"]
    assert list(parse_sse(lines)) == []


# -- parameters -----------------------------------------------------------------------------


def test_parameters_left_as_none_are_not_sent() -> None:
    assert sample_params(2, None, {"temperature": None}) == {"n": 2}
    assert sample_params(1, 0, {"steps": 20, "sampler": "ddim"}) == {
        "n": 1,
        "seed": 0,
        "steps": 20,
        "sampler": "ddim",
    }


def test_grpc_requests_set_the_field_of_each_parameter_by_name() -> None:
    request = sample_request("m", 3, 5, steps=20, guidance_scale=2.5, class_label=4)
    assert request == pb.SampleRequest(
        model="m", n=3, seed=5, steps=20, guidance_scale=2.5, class_label=4
    )
    unset = sample_request("m", 1, temperature=None)
    assert not unset.HasField("seed") and not unset.HasField("temperature")


@pytest.mark.parametrize(
    ("params", "field"),
    [({"bogus": 1}, "bogus"), ({"steps": "many"}, "steps"), ({"seed": -1}, "seed")],
)
def test_grpc_refuses_what_a_request_cannot_carry_naming_the_field(params, field) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        sample_request("m", **params)
    assert caught.value.field == field and caught.value.code == "invalid_argument"
    assert caught.value.message.startswith(f"{field}: ")


# -- errors ---------------------------------------------------------------------------------


def test_cancelled_maps_to_job_cancelled_on_every_path() -> None:
    body = {"error": {"code": "cancelled", "message": "job was cancelled"}}
    assert type(from_http(409, body)) is JobCancelledError
    assert type(from_http(409, "no body")) is JobCancelledError
    assert type(from_code("cancelled", "job was cancelled")) is JobCancelledError


class _RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "details"

    def trailing_metadata(self) -> tuple:
        return ()


def test_not_found_means_what_the_call_looked_up() -> None:
    body = {"error": {"code": "not_found", "message": "no job 'x'"}}
    assert type(from_http(404, body)) is ModelNotFoundError
    job = from_http(404, body, not_found=JobNotFoundError)
    assert type(job) is JobNotFoundError and job.code == "not_found"
    missing = _RpcError(grpc.StatusCode.NOT_FOUND)
    assert type(from_grpc(missing, not_found=JobNotFoundError)) is JobNotFoundError
    assert type(from_grpc(_RpcError(grpc.StatusCode.CANCELLED))) is JobCancelledError


def test_error_events_keep_code_and_field() -> None:
    error = from_code("invalid_argument", "steps: too many", "steps")
    assert type(error) is InvalidArgumentError and error.field == "steps"
    assert type(from_code("overloaded", "busy")) is OverloadedError
    assert type(from_code("something_new", "?")) is ServerError


# -- events and jobs on the wire ------------------------------------------------------------


def test_rest_and_grpc_events_become_the_same_objects() -> None:
    params = {"n": 1, "seed": 3, "temperature": 0.5}
    accepted = Accepted("j1", "vae@1", 3, params)
    sse_accepted = json.dumps({"job_id": "j1", "model": "vae@1", **params})
    proto_accepted = pb.JobAccepted(model="vae@1", seed=3, params_json=json.dumps(params))
    assert event_from_sse(ServerSentEvent("accepted", sse_accepted)) == accepted
    assert event_from_proto(pb.JobEvent(job_id="j1", accepted=proto_accepted)) == accepted

    assert event_from_sse(ServerSentEvent("queued", '{"position":2}')) == Queued(2)
    assert event_from_proto(pb.JobEvent(queued=pb.JobQueued(position=2))) == Queued(2)
    progress = pb.JobEvent(progress=pb.JobProgress(step=3, steps=10))
    assert event_from_proto(progress) == Progress(3, 10)

    preview = event_from_sse(
        ServerSentEvent("preview", json.dumps({"step": 4, "images": [_b64(9)]}))
    )
    assert isinstance(preview, Preview) and preview.step == 4
    assert preview.images[0].getpixel((0, 0)) == 9

    result = pb.SampleResponse(model="vae@1", seed=3, images=[_png(7)])
    event = event_from_proto(pb.JobEvent(result=result))
    assert isinstance(event, Result) and event.result.seed == 3
    assert event.result.images[0].getpixel((1, 1)) == 7


def test_error_events_raise_and_unknown_events_are_skipped() -> None:
    error = json.dumps({"code": "cancelled", "message": "job was cancelled", "field": None})
    with pytest.raises(JobCancelledError):
        event_from_sse(ServerSentEvent("error", error))
    with pytest.raises(InvalidArgumentError, match="steps"):
        event_from_proto(pb.JobEvent(error=pb.JobError(code="invalid_argument", message="steps")))
    assert event_from_sse(ServerSentEvent("heartbeat", "{}")) is None  # a newer server's
    assert event_from_proto(pb.JobEvent(job_id="j")) is None


def test_job_info_reads_the_same_from_both_wires() -> None:
    params = {"n": 1, "seed": 8}
    rest = job_info_from_json(
        {
            "job_id": "j",
            "model": "vae@1",
            "method": "sample",
            "state": "cancelled",
            "position": None,
            "step": 2,
            "steps": 9,
            "params": params,
            "created_at": 1.5,
            "preview": [_b64(1)],
            "seed": 8,
            "images": None,
            "error": {"code": "cancelled", "message": "job was cancelled", "field": None},
        }
    )
    grpc_info = job_info_from_proto(
        pb.JobInfo(
            job_id="j",
            model="vae@1",
            method="sample",
            state="cancelled",
            step=2,
            steps=9,
            params_json=json.dumps(params),
            created_at=1.5,
            preview=[_png(1)],
            seed=8,
            error=pb.JobError(code="cancelled", message="job was cancelled"),
        )
    )
    for info in (rest, grpc_info):
        assert (info.state, info.step, info.steps, info.seed) == ("cancelled", 2, 9, 8)
        assert info.finished and info.position is None and info.images == []
        assert info.params == params and len(info.preview) == 1
        assert isinstance(info.error, JobCancelledError)
    queued = job_info_from_proto(pb.JobInfo(state="queued", position=0, params_json="{}"))
    assert queued.position == 0 and queued.error is None and not queued.finished


# -- CLI --------------------------------------------------------------------------------------


def _sample_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    client_cli.register(parser.add_subparsers())
    return parser.parse_args(["sample", "--model", "m", *argv])


def test_cli_params_parse_numbers_and_merge_the_shortcuts() -> None:
    args = _sample_args(
        "--param", "eta=0.5", "--param", "preview_every=2", "--param", "sampler=ddim",
        "--steps", "20", "--guidance-scale", "3",
    )  # fmt: skip
    assert client_cli.sample_params(args) == {
        "eta": 0.5,
        "preview_every": 2,
        "sampler": "ddim",
        "steps": 20,
        "guidance_scale": 3.0,
    }
    assert client_cli.sample_params(_sample_args()) == {}  # temperature only when given


@pytest.mark.parametrize(
    "argv", [["--param", "steps=2", "--steps", "3"], ["--param", "seed=1"], ["--param", "n=2"]]
)
def test_cli_refuses_a_parameter_given_twice(argv: list[str]) -> None:
    with pytest.raises(ValueError):
        client_cli.sample_params(_sample_args(*argv))


def test_cli_param_needs_key_and_value() -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        client_cli.key_value("steps")


def test_progress_falls_back_to_lines_without_tqdm(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm fails
    display = client_cli.ProgressDisplay()
    display.queued(1)
    display.step(1, 2)
    display.step(2, 2)
    display.close()
    assert capsys.readouterr().err.splitlines() == ["queued at position 1", "step 1/2", "step 2/2"]
