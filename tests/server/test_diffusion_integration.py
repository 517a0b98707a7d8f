"""A diffusion model served end to end: a real server (torch blocked) over an exported tiny
class-conditional DDPM, driven over real HTTP (JSON, Server-Sent Events, jobs routes) and
real gRPC (unary, event streams, jobs), including cancellation by every route."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest
from helpers.server_process import ServerFactory, ServerProcess, metric, sse, until
from latentserve.clients.sse import parse_sse
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow

MODEL = "ddpm-tiny"
# A job long enough to cancel mid-way: the denoiser runs two rows per call here, so each of
# its 100 steps is 32 graph calls.
LONG = {"n": 64, "steps": 100, "sampler": "ddpm"}
SERVER_TOML = f"""
[models.{MODEL}]
max_batch_size = 2
max_concurrent_batches = 1
"""


@pytest.fixture(scope="module")
def server(diffusion_repository: Path, start_server: ServerFactory) -> Iterator:
    with start_server(diffusion_repository, "diffusion", SERVER_TOML) as process:
        yield process


def cancelled(http: httpx.Client) -> float:
    return metric(http, "latentserve_jobs_total", model=f"{MODEL}@1", state="cancelled")


def failed(http: httpx.Client) -> float:
    return metric(http, "latentserve_jobs_total", model=f"{MODEL}@1", state="failed")


def test_the_model_describes_its_kind_and_parameters(http: httpx.Client) -> None:
    info = http.get(f"/v1/models/{MODEL}").json()
    assert info["family"] == "ddpm" and info["pipeline"] == "diffusion"
    assert info["capabilities"] == ["sample", "interpolate"]
    assert {"steps", "sampler", "eta", "guidance_scale", "class_label"} <= set(
        info["sample_parameters"]
    )


@pytest.mark.parametrize(
    "params",
    [
        {"sampler": "ddim", "steps": 8},
        {"sampler": "ddim", "steps": 8, "eta": 1.0},
        {"sampler": "ddpm", "steps": 12},
        {"sampler": "dpmpp_2m", "steps": 6, "class_label": 3, "guidance_scale": 2.5},
        {"sampler": "euler_a", "steps": 10, "class_label": 7},
    ],
)
def test_same_seed_same_images_over_both_transports_whatever_shares_the_batch(
    http: httpx.Client, stub: pb_grpc.GenerativeServiceStub, params: dict
) -> None:
    body = {"n": 2, "seed": 5, **params}
    alone = http.post(f"/v1/models/{MODEL}/sample", json=body).json()
    mates = [
        {"n": 3, "seed": 1, "steps": 30, "sampler": "ddpm"},
        {"n": 1, "seed": 2, "steps": 4, "sampler": "dpmpp_2m", "class_label": 1},
    ]
    with ThreadPoolExecutor(3) as pool:
        futures = [
            pool.submit(http.post, f"/v1/models/{MODEL}/sample", json=b) for b in (body, *mates)
        ]
        together = futures[0].result().json()
    via_grpc = stub.Sample(pb.SampleRequest(model=MODEL, **body), timeout=60)
    assert alone["seed"] == 5 and len(alone["images"]) == 2
    assert together["images"] == alone["images"]
    assert [base64.b64encode(i).decode() for i in via_grpc.images] == alone["images"]


def test_events_over_sse_and_grpc_streaming_agree(
    http: httpx.Client, stub: pb_grpc.GenerativeServiceStub
) -> None:
    body = {"n": 2, "seed": 9, "steps": 6, "preview_every": 2, "class_label": 4}
    with http.stream(
        "POST", f"/v1/models/{MODEL}/sample", json=body, headers={"Accept": "text/event-stream"}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(sse(response))
    names = [name for name, _ in events]
    assert names[0] == "accepted" and names[-1] == "result"
    assert events[0][1]["job_id"] and events[0][1]["seed"] == 9
    assert [d["step"] for n, d in events if n == "progress"] == [1, 2, 3, 4, 5, 6]
    assert [d["step"] for n, d in events if n == "preview"] == [2, 4]
    unary = http.post(f"/v1/models/{MODEL}/sample", json=body).json()
    assert events[-1][1]["images"] == unary["images"]

    stream = list(stub.SampleEvents(pb.SampleRequest(model=MODEL, **body), timeout=60))
    kinds = [event.WhichOneof("event") for event in stream]
    assert kinds[0] == "accepted" and kinds[-1] == "result"
    assert [e.progress.step for e in stream if e.HasField("progress")] == [1, 2, 3, 4, 5, 6]
    assert [e.preview.step for e in stream if e.HasField("preview")] == [2, 4]
    assert [base64.b64encode(i).decode() for i in stream[-1].result.images] == unary["images"]


def test_jobs_over_rest_submit_follow_get_and_404(http: httpx.Client) -> None:
    submitted = http.post("/v1/jobs", json={"model": MODEL, "params": {"n": 1, "seed": 3}})
    assert submitted.status_code == 202
    job_id = submitted.json()["job_id"]
    with http.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        assert list(sse(response))[-1][0] == "result"
    info = http.get(f"/v1/jobs/{job_id}").json()
    assert info["state"] == "done" and info["steps"] == info["step"] > 0
    assert info["seed"] == 3 and len(info["images"]) == 1
    same = http.post(f"/v1/models/{MODEL}/sample", json={"n": 1, "seed": 3}).json()
    assert info["images"] == same["images"]
    missing = http.get("/v1/jobs/no-such-job")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert http.delete("/v1/jobs/no-such-job").status_code == 404
    bad = http.post("/v1/jobs", json={"model": MODEL, "params": {"temperature": 0.5}})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "temperature"


def _ids_and_kinds(response: httpx.Response) -> list[tuple[int, str]]:
    return [(int(e.id), e.event) for e in parse_sse(response.iter_lines())]


def test_event_streams_number_their_events_and_resume_after_the_last_seen(
    http: httpx.Client, stub: pb_grpc.GenerativeServiceStub
) -> None:
    params = {"n": 1, "seed": 4, "steps": 6, "sampler": "ddim", "preview_every": 2}
    job_id = http.post("/v1/jobs", json={"model": MODEL, "params": params}).json()["job_id"]
    with http.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        whole = _ids_and_kinds(response)
    assert whole[0] == (1, "accepted") and whole[-1][1] == "result"
    ids = [i for i, _ in whole]
    assert ids == sorted(set(ids))

    # A dropped connection resumes after the last event seen: the latest of each kind since.
    headers = {"Last-Event-ID": "1"}
    with http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as response:
        resumed = _ids_and_kinds(response)
    assert resumed[-1] == whole[-1]
    assert all(i > 1 for i, _ in resumed) and "accepted" not in {k for _, k in resumed}
    final = str(whole[-1][0])
    with http.stream("GET", f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": final}) as r:
        assert r.status_code == 200 and _ids_and_kinds(r) == []
    bad = http.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "soon"})
    assert bad.status_code == 422 and "last-event-id" in bad.json()["error"]["field"]

    # gRPC numbers the same events alike and resumes the same way.
    over_grpc = list(stub.WatchJob(pb.JobRef(job_id=job_id, after_event_id=1), timeout=30))
    assert [(e.event_id, e.WhichOneof("event")) for e in over_grpc] == resumed


def test_delete_cancels_a_job_at_its_next_step(http: httpx.Client) -> None:
    steps_before = metric(http, "latentserve_job_steps_total", model=f"{MODEL}@1")
    job_id = http.post("/v1/jobs", json={"model": MODEL, "params": LONG}).json()["job_id"]
    with http.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        for name, data in sse(response):
            if name == "progress" and data["step"] >= 3:
                break
    at_delete = http.delete(f"/v1/jobs/{job_id}").json()
    with http.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        last = list(sse(response))[-1]
    assert last == ("error", {"code": "cancelled", "message": "job was cancelled", "field": None})
    info = http.get(f"/v1/jobs/{job_id}").json()
    assert info["state"] == "cancelled" and info["error"]["code"] == "cancelled"
    steps = metric(http, "latentserve_job_steps_total", model=f"{MODEL}@1") - steps_before
    assert at_delete["step"] < 100 and steps <= at_delete["step"] + 1


def test_an_http_client_that_leaves_cancels_its_job(http: httpx.Client) -> None:
    before = cancelled(http)
    with http.stream(
        "POST", f"/v1/models/{MODEL}/sample", json=LONG, headers={"Accept": "text/event-stream"}
    ) as response:
        for name, data in sse(response):
            if name == "progress" and data["step"] >= 2:
                break  # closing the stream closes the connection
    until(lambda: cancelled(http) == before + 1)


def test_a_unary_http_client_that_leaves_cancels_its_job(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.http_url, timeout=60) as http:
        before = cancelled(http)
        started = metric(http, "latentserve_jobs_active", model=f"{MODEL}@1")
        with (
            httpx.Client(base_url=server.http_url, timeout=0.5) as impatient,
            pytest.raises(httpx.TimeoutException),
        ):
            impatient.post(f"/v1/models/{MODEL}/sample", json=LONG)
        until(lambda: cancelled(http) == before + 1)
        assert metric(http, "latentserve_jobs_active", model=f"{MODEL}@1") == started


def test_grpc_cancellation_and_deadline_cancel_the_job(
    http: httpx.Client, stub: pb_grpc.GenerativeServiceStub
) -> None:
    before = cancelled(http)
    call = stub.SampleEvents(pb.SampleRequest(model=MODEL, **LONG), timeout=60)
    for event in call:
        if event.HasField("progress") and event.progress.step >= 2:
            call.cancel()
            break
    until(lambda: cancelled(http) == before + 1)
    # The deadline ends the job on the server (failed: deadline_exceeded) or, when the
    # client's library gets there first, cancels it: either way it stops computing.
    ended = cancelled(http) + failed(http)
    try:
        events = list(stub.SampleEvents(pb.SampleRequest(model=MODEL, **LONG), timeout=0.5))
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    else:
        assert events[-1].WhichOneof("event") == "error"
        assert events[-1].error.code == "deadline_exceeded"
    until(lambda: cancelled(http) + failed(http) == ended + 1)


def test_grpc_jobs_submit_watch_get_cancel(stub: pb_grpc.GenerativeServiceStub) -> None:
    job = stub.SubmitJob(
        pb.JobRequest(sample=pb.SampleRequest(model=MODEL, n=1, seed=4, steps=5)), timeout=30
    )
    events = list(stub.WatchJob(pb.JobRef(job_id=job.job_id), timeout=60))
    assert events[-1].HasField("result") and events[-1].result.seed == 4
    info = stub.GetJob(pb.JobRef(job_id=job.job_id), timeout=30)
    assert info.state == "done" and len(info.images) == 1 and info.seed == 4
    long = stub.SubmitJob(pb.JobRequest(sample=pb.SampleRequest(model=MODEL, **LONG)), timeout=30)
    stub.CancelJob(pb.JobRef(job_id=long.job_id), timeout=30)
    last = list(stub.WatchJob(pb.JobRef(job_id=long.job_id), timeout=60))[-1]
    assert last.error.code == "cancelled"
    with pytest.raises(grpc.RpcError) as err:
        stub.GetJob(pb.JobRef(job_id="no-such-job"), timeout=30)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"temperature": 0.5}, "temperature"),
        ({"steps": 0}, "steps"),
        ({"sampler": "heun"}, "sampler"),
        ({"class_label": 10}, "class_label"),
        ({"class_label": 1, "guidance_scale": -1.0}, "guidance_scale"),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(
    http: httpx.Client, stub: pb_grpc.GenerativeServiceStub, params: dict, field: str
) -> None:
    response = http.post(f"/v1/models/{MODEL}/sample", json={"n": 1, **params})
    assert response.status_code == 422 and response.json()["error"]["field"] == field
    with pytest.raises(grpc.RpcError) as err:
        stub.Sample(pb.SampleRequest(model=MODEL, n=1, **params), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(err.value.trailing_metadata())["field"] == field
