"""SIGTERM while long jobs run: every job still running when the drain deadline passes ends
``failed`` (code ``unavailable``, the server shut down), each of its watchers over REST
(Server-Sent Events) and gRPC (server streaming) receives that final event before its
connection closes, the process exits 0, and the shutdown log counts those jobs."""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest
from helpers.server_process import ServerProcess, sse
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow

MODEL = "ddpm-tiny"
# Each step of such a job is 32 denoiser calls of two rows: far longer than the drain.
LONG = {"n": 64, "steps": 100, "sampler": "ddpm"}
SERVER_TOML = f"""
drain_timeout_s = 1

[models.{MODEL}]
max_batch_size = 2
max_concurrent_batches = 1
"""
WAIT_S = 60  # for conditions on a loaded machine


class Watcher:
    """One client following a job's events in its own thread: what it received (event name,
    fields), and a flag raised once the job reports progress (it is running)."""

    def __init__(self, name: str, follow: Callable[[Watcher], None]) -> None:
        self.name = name
        self.events: list[tuple[str, dict]] = []
        self.running = threading.Event()
        self.ended_by: str | None = None  # a transport error that cut the stream, if any
        self._follow = follow

    def received(self, kind: str, data: dict) -> None:
        self.events.append((kind, data))
        if kind == "progress":
            self.running.set()

    def __call__(self) -> None:
        try:
            self._follow(self)
        except (httpx.HTTPError, grpc.RpcError) as exc:
            self.ended_by = repr(exc)
        finally:
            self.running.set()  # never leave the test waiting on a watcher that ended


def rest_events(http: httpx.Client, method: str, url: str, **kwargs: object) -> Callable:
    def follow(watcher: Watcher) -> None:
        with http.stream(method, url, **kwargs) as response:  # type: ignore[arg-type]
            assert response.status_code == 200, response.read()
            for kind, data in sse(response):
                watcher.received(kind, data)

    return follow


def grpc_events(open_stream: Callable[[], Iterator[pb.JobEvent]]) -> Callable:
    def follow(watcher: Watcher) -> None:
        for event in open_stream():
            kind = event.WhichOneof("event")
            error = event.error
            watcher.received(kind, {"code": error.code, "message": error.message})

    return follow


def test_sigterm_fails_running_jobs_and_tells_every_watcher(
    diffusion_repository: Path, tmp_path: Path
) -> None:
    server = ServerProcess(diffusion_repository, tmp_path, config=SERVER_TOML)
    try:
        with (
            httpx.Client(base_url=server.http_url, timeout=WAIT_S) as http,
            grpc.insecure_channel(server.grpc_target) as channel,
            ThreadPoolExecutor(4) as pool,
        ):
            stub = pb_grpc.GenerativeServiceStub(channel)
            submitted = http.post("/v1/jobs", json={"model": MODEL, "params": LONG})
            assert submitted.status_code == 202, submitted.text
            job_id = submitted.json()["job_id"]
            watchers = [
                Watcher("rest job events", rest_events(http, "GET", f"/v1/jobs/{job_id}/events")),
                Watcher(
                    "grpc WatchJob",
                    grpc_events(lambda: stub.WatchJob(pb.JobRef(job_id=job_id), timeout=WAIT_S)),
                ),
                Watcher(
                    "rest sample events",
                    rest_events(
                        http,
                        "POST",
                        f"/v1/models/{MODEL}/sample",
                        json=LONG,
                        headers={"Accept": "text/event-stream"},
                    ),
                ),
                Watcher(
                    "grpc SampleEvents",
                    grpc_events(
                        lambda: stub.SampleEvents(
                            pb.SampleRequest(model=MODEL, **LONG), timeout=WAIT_S
                        )
                    ),
                ),
            ]
            following = [pool.submit(watcher) for watcher in watchers]
            for watcher in watchers:
                assert watcher.running.wait(WAIT_S), watcher.name
            assert all(w.events[-1][0] == "progress" for w in watchers), "a job ended early"
            server.process.send_signal(signal.SIGTERM)
            for done in following:
                done.result(timeout=WAIT_S)
        assert server.process.wait(WAIT_S) == 0
    finally:
        server.stop()
    log = server.log()
    for watcher in watchers:
        assert watcher.ended_by is None, (watcher.name, watcher.ended_by, watcher.events[-3:])
        kind, data = watcher.events[-1]
        assert kind == "error", (watcher.name, watcher.events[-3:])
        assert data["code"] == "unavailable", (watcher.name, data)
        assert "shut down" in data["message"], (watcher.name, data)
    ended = re.search(r"jobs ended by the shutdown: (\d+)", log)
    assert ended and int(ended.group(1)) == 3, log  # the watched job and the two streamed
    assert "timeout graceful shutdown exceeded" not in log and "Traceback" not in log, log
