"""Readiness follows the server's state: ``/readyz`` answers 503 and gRPC health
NOT_SERVING while the models load, both turn ready once they are loaded, and both say not
ready again while the server drains after SIGTERM (new work is refused meanwhile).

Loading is held open by the test itself: the server process runs with an injected graph
opener that waits for a line on its standard input before it opens the first graph, so
the test sees the loading state for as long as it needs, with no timing involved."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers.server_process import BLOCK_TORCH, until
from latentserve.clients.local import free_port
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow

MODEL = "ddpm-tiny"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# The server, with a graph opener that waits for the test's go-ahead on stdin once.
GATED_SERVER = """
import logging, sys, threading
from pathlib import Path
from latentserve.server import app
from latentserve.server.repository.runtime import open_graph
from latentserve.server.settings import load_settings

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
opened = threading.Event()

def gated_open(*args):
    if not opened.is_set():
        sys.stdin.readline()  # the test lets loading go on
        opened.set()
    return open_graph(*args)

repository, http_port, grpc_port, config = sys.argv[1:]
settings = load_settings(
    Path(config), repository=repository, host="127.0.0.1", http_port=int(http_port),
    grpc_port=int(grpc_port),
)
app.run(settings, opener=gated_open)
"""
SERVER_TOML = f"""
drain_timeout_s = 5

[models.{MODEL}]
max_batch_size = 2
max_concurrent_batches = 1
"""
WAIT_S = 60


class GatedServer:
    def __init__(self, repository: Path, workdir: Path) -> None:
        (workdir / "sitecustomize.py").write_text(BLOCK_TORCH)
        (workdir / "server.toml").write_text(SERVER_TOML)
        self.http_port, self.grpc_port = free_port(), free_port()
        self.log_path = workdir / "server.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", GATED_SERVER, str(repository), str(self.http_port)]
                + [str(self.grpc_port), str(workdir / "server.toml")],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(workdir)},
            )

    def let_loading_go_on(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")
        self.process.stdin.flush()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT_S)


@pytest.fixture
def gated(diffusion_repository: Path, tmp_path: Path) -> Iterator[GatedServer]:
    server = GatedServer(diffusion_repository, tmp_path)
    yield server
    server.stop()


def answers(http: httpx.Client, path: str) -> bool:
    try:
        http.get(path)
    except httpx.TransportError:
        return False
    return True


def health(channel: grpc.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=WAIT_S).status


def test_not_ready_while_models_load_then_ready(gated: GatedServer) -> None:
    with (
        httpx.Client(base_url=f"http://127.0.0.1:{gated.http_port}", timeout=WAIT_S) as http,
        grpc.insecure_channel(f"127.0.0.1:{gated.grpc_port}") as channel,
    ):
        until(lambda: answers(http, "/healthz"), WAIT_S)  # alive, still loading
        assert http.get("/healthz").status_code == 200
        loading = http.get("/readyz")
        assert loading.status_code == 503, loading.text
        assert loading.json()["error"]["code"] == "unavailable"
        assert health(channel) == NOT_SERVING
        assert health(channel, "latentserve.v1.GenerativeService") == NOT_SERVING
        assert "ready:" not in gated.log()
        gated.let_loading_go_on()
        until(lambda: http.get("/readyz").status_code == 200, WAIT_S)
        assert health(channel) == SERVING
        assert health(channel, "latentserve.v1.GenerativeService") == SERVING


def test_not_ready_while_draining(gated: GatedServer) -> None:
    gated.let_loading_go_on()
    with (
        httpx.Client(base_url=f"http://127.0.0.1:{gated.http_port}", timeout=WAIT_S) as http,
        grpc.insecure_channel(f"127.0.0.1:{gated.grpc_port}") as channel,
    ):
        until(lambda: answers(http, "/readyz") and http.get("/readyz").status_code == 200, WAIT_S)
        assert health(channel) == SERVING
        # A job far longer than the drain keeps the server draining until its deadline.
        job = pb_grpc.GenerativeServiceStub(channel).SampleEvents(
            pb.SampleRequest(model=MODEL, n=64, steps=100, sampler="ddpm"), timeout=WAIT_S
        )
        assert next(e for e in job if e.HasField("progress")).progress.step >= 1
        gated.process.send_signal(signal.SIGTERM)
        until(lambda: health(channel) == NOT_SERVING, WAIT_S)
        assert health(channel, "latentserve.v1.GenerativeService") == NOT_SERVING
        draining = http.get("/readyz")
        assert draining.status_code == 503 and draining.json()["error"]["code"] == "unavailable"
        refused = http.post(f"/v1/models/{MODEL}/sample", json={"n": 1})
        assert refused.status_code == 503, refused.text
        assert "shutting down" in refused.json()["error"]["message"]
        assert http.get("/healthz").status_code == 200  # alive until it exits
        assert gated.process.poll() is None  # still draining: the job is running
        last = list(job)[-1]
        assert last.WhichOneof("event") == "error" and last.error.code == "unavailable"
    assert gated.process.wait(WAIT_S) == 0, gated.log()
