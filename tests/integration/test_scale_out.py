"""Jobs across replicas: real ``redis-server``, real haproxy balancing round-robin over
two real servers (``job_store = "redis"``), and a third server killed mid-job.

A job submitted through the balancer is polled and followed (Server-Sent Events, resumed
by ``Last-Event-ID``) through each replica directly and cancelled through the replica
that does not run it; a finished job's PNGs come from either replica; a job whose replica
is killed (SIGKILL) is reported failed, naming the replica, within the lease.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest
from helpers.haproxy import running_haproxy
from helpers.redis_server import running_redis
from helpers.server_process import ServerFactory, ServerProcess, metric
from helpers.tools import require_tool
from latentserve.clients.sse import ServerSentEvent, parse_sse
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow

MODEL = "ddpm-tiny"
LEASE_S = 2.0
# Long enough to act on mid-way: two rows per denoiser call, so each of the 100 steps is
# 32 graph calls.
LONG = {"n": 64, "steps": 100, "sampler": "ddpm"}


def config(redis_url: str) -> str:
    return f"""
job_store = "redis"
redis_url = "{redis_url}"
replica_lease_s = {LEASE_S}
intra_op_threads = 1

[models.{MODEL}]
max_batch_size = 2
max_concurrent_batches = 1
"""


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = require_tool("redis-server")
    require_tool("haproxy")  # before any server starts
    with running_redis(binary, tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="module")
def replicas(
    diffusion_repository: Path, start_server: ServerFactory, redis_url: str
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    with (
        start_server(diffusion_repository, "replica-a", config(redis_url)) as a,
        start_server(diffusion_repository, "replica-b", config(redis_url)) as b,
    ):
        yield a, b


@pytest.fixture(scope="module")
def balancer(
    replicas: tuple[ServerProcess, ServerProcess], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    backends = [r.http_url.removeprefix("http://") for r in replicas]
    workdir = tmp_path_factory.mktemp("lb")
    with (
        running_haproxy(require_tool("haproxy"), backends, workdir) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        yield http


def client(server: ServerProcess, read_timeout: float = 30) -> httpx.Client:
    return httpx.Client(base_url=server.http_url, timeout=httpx.Timeout(30, read=read_timeout))


def events(
    server: ServerProcess,
    job_id: str,
    last_event_id: int | None = None,
    read_timeout: float = 30,
) -> Iterator[ServerSentEvent]:
    """The job's events through ``server``; no event for ``read_timeout`` fails the read
    (keep-alive comments come only every 15 s)."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    with (
        client(server, read_timeout) as http,
        http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as response,
    ):
        assert response.status_code == 200, response.read()
        yield from parse_sse(response.iter_lines())


def first_progress(server: ServerProcess, job_id: str) -> ServerSentEvent:
    for event in events(server, job_id):
        if event.event == "progress":
            return event
    raise AssertionError("the job ended before any progress")


def final(server: ServerProcess, job_id: str) -> ServerSentEvent:
    for event in events(server, job_id):
        if event.event in ("result", "error"):
            return event
    raise AssertionError("the stream ended without a final event")


def running_on(
    replicas: tuple[ServerProcess, ServerProcess],
) -> tuple[ServerProcess, ServerProcess]:
    """(the replica running the one active job, the other one)."""
    active = [metric(client(r), "latentserve_jobs_active", model=f"{MODEL}@1") for r in replicas]
    assert sorted(active) == [0, 1], active
    return (replicas[0], replicas[1]) if active[0] else (replicas[1], replicas[0])


def test_a_job_is_followed_and_cancelled_through_either_replica(
    replicas: tuple[ServerProcess, ServerProcess], balancer: httpx.Client
) -> None:
    submitted = balancer.post("/v1/jobs", json={"model": MODEL, "params": LONG})
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]
    owner, other = running_on(replicas)

    for replica in (owner, other):  # polled and streamed through each, directly
        with client(replica) as http:
            info = http.get(f"/v1/jobs/{job_id}").json()
        assert info["job_id"] == job_id and info["state"] in ("queued", "running")
        progress = first_progress(replica, job_id)
        assert progress.id and int(progress.id) > 1
    # a stream resumed through the other replica goes on after the id it names
    resumed = next(events(other, job_id, last_event_id=int(progress.id)))
    assert int(resumed.id) > int(progress.id)

    with client(other) as http:
        cancelled = http.delete(f"/v1/jobs/{job_id}")
    assert cancelled.status_code == 200, cancelled.text
    ended = final(other, job_id)
    assert ended.event == "error" and '"code":"cancelled"' in ended.data
    for _ in range(2):  # both replicas, round-robin
        info = balancer.get(f"/v1/jobs/{job_id}").json()
        assert info["state"] == "cancelled" and info["step"] < LONG["steps"]
        assert info["error"]["code"] == "cancelled"
    with grpc.insecure_channel(other.grpc_target) as channel:  # gRPC sees the same job
        stub = pb_grpc.GenerativeServiceStub(channel)
        info = stub.GetJob(pb.JobRef(job_id=job_id), timeout=30)
        watched = list(stub.WatchJob(pb.JobRef(job_id=job_id, after_event_id=1), timeout=30))
    assert info.state == "cancelled" and info.error.code == "cancelled"
    assert watched[-1].WhichOneof("event") == "error"
    assert watched[-1].error.code == "cancelled"


def test_a_finished_jobs_images_come_from_either_replica(
    replicas: tuple[ServerProcess, ServerProcess], balancer: httpx.Client
) -> None:
    params = {"n": 2, "steps": 4, "sampler": "ddim", "seed": 5}
    job_id = balancer.post("/v1/jobs", json={"model": MODEL, "params": params}).json()["job_id"]
    result = final(replicas[1], job_id)
    assert result.event == "result"
    pngs = []
    for replica in replicas:
        with client(replica) as http:
            info = http.get(f"/v1/jobs/{job_id}").json()
            image = http.get(f"/v1/jobs/{job_id}/images/1")
        assert info["state"] == "done" and len(info["images"]) == 2
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert base64.b64decode(info["images"][1]) == image.content
        pngs.append(image.content)
    assert pngs[0] == pngs[1]


def test_a_job_whose_replica_is_killed_is_reported_failed(
    diffusion_repository: Path,
    replicas: tuple[ServerProcess, ServerProcess],
    redis_url: str,
    tmp_path: Path,
) -> None:
    doomed = ServerProcess(diffusion_repository, tmp_path, config(redis_url))
    try:
        with client(doomed) as http:
            submitted = http.post("/v1/jobs", json={"model": MODEL, "params": LONG})
        job_id = submitted.json()["job_id"]
        # through a surviving replica; the failure must come within the lease and a half
        watcher = events(replicas[0], job_id, read_timeout=3 * LEASE_S)
        assert next(e for e in watcher if e.event == "progress")
        doomed.process.kill()
        killed = time.monotonic()
        ended = next(e for e in watcher if e.event in ("result", "error"))
        waited = time.monotonic() - killed
        watcher.close()
    finally:
        doomed.stop()
    assert ended.event == "error" and '"code":"unavailable"' in ended.data
    assert "stopped before the job finished" in ended.data
    assert waited < 3 * LEASE_S, waited
    with client(replicas[1]) as http:
        info = http.get(f"/v1/jobs/{job_id}").json()
    assert info["state"] == "failed" and "stopped" in info["error"]["message"]


def test_a_replica_stops_promptly_after_a_follower_of_another_replicas_job_left(
    diffusion_repository: Path,
    replicas: tuple[ServerProcess, ServerProcess],
    redis_url: str,
    tmp_path: Path,
) -> None:
    """A client follows, through one replica, a job another replica runs, and hangs up
    mid-stream: that replica's stream (waiting on Redis) is cut off cleanly, and SIGTERM
    then stops it, drained, with exit code 0 well within the stop timeout."""
    follower = ServerProcess(diffusion_repository, tmp_path, config(redis_url))
    owner = replicas[0]
    try:
        with client(owner) as http:
            job_id = http.post("/v1/jobs", json={"model": MODEL, "params": LONG}).json()["job_id"]
        for _ in range(3):  # each hang-up leaves the follower's stream waiting on Redis
            watcher = events(follower, job_id)
            assert next(e for e in watcher if e.event == "progress")
            watcher.close()
        with client(owner) as http:
            assert http.delete(f"/v1/jobs/{job_id}").status_code == 200
        assert final(follower, job_id).event == "error"
    finally:
        code = follower.stop(timeout=15)
    log = follower.log()
    assert code == 0, log
    assert "already running" not in log and "Exception in ASGI application" not in log, log
    assert "stopped: " in log, log


def test_a_replica_stops_promptly_while_following_another_replicas_job(
    diffusion_repository: Path,
    replicas: tuple[ServerProcess, ServerProcess],
    redis_url: str,
    tmp_path: Path,
) -> None:
    """SIGTERM reaches a replica while a client follows, through it, a job another replica
    runs: the stream ends cleanly (the client may resume it elsewhere with
    ``Last-Event-ID``) and the replica exits 0 without waiting for the job."""
    follower = ServerProcess(diffusion_repository, tmp_path, config(redis_url))
    owner = replicas[0]
    seen: list[ServerSentEvent] = []
    progressing = threading.Event()

    def follow(job_id: str) -> None:  # a client reading on while the server stops
        for event in events(follower, job_id):
            seen.append(event)
            if event.event == "progress":
                progressing.set()

    try:
        with client(owner) as http:
            job_id = http.post("/v1/jobs", json={"model": MODEL, "params": LONG}).json()["job_id"]
        with ThreadPoolExecutor(1) as pool:
            following = pool.submit(follow, job_id)
            assert progressing.wait(30), following.result(timeout=1)
            asked = time.monotonic()
            code = follower.stop(timeout=15)
            stopped_in = time.monotonic() - asked
            following.result(timeout=30)  # the stream ended, complete, with the server
    finally:
        follower.stop()
        with client(owner) as http:
            http.delete(f"/v1/jobs/{job_id}")
    log = follower.log()
    assert code == 0, log
    assert all(e.event not in ("result", "error") for e in seen), seen
    assert stopped_in < 10, (stopped_in, log)
    assert "Exception in ASGI application" not in log, log
