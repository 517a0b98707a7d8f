"""``latentserve serve --workers 2``: two real serving processes on one pair of loopback
ports (SO_REUSEPORT) with a real ``redis-server`` as their job store.

Requests on fresh connections land in both workers (each worker's own count, summed by
the merged ``/metrics``, equals what was sent); SIGTERM drains what both accepted and the
server exits 0; a worker that dies takes the server down with exit code 1; and more than
one worker without the shared job store is refused, naming both settings.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers.redis_server import running_redis
from helpers.server_process import ServerFactory, ServerProcess, metric, until
from helpers.tools import require_tool
from latentserve.clients import GrpcClient

pytestmark = pytest.mark.slow

MODEL = "vae-tiny"
SAMPLE = {"n": 1, "seed": 3}
# Requests wait up to 2 s for a batch to fill: long enough to hold them in flight while
# the server is told to stop (warm-up waits as long per capability: one version only).
HELD = f"""
[models.{MODEL}]
max_batch_size = 64
max_queue_delay_ms = 2000
"""


def config(redis_url: str, models: str = "") -> str:
    return f'job_store = "redis"\nredis_url = "{redis_url}"\nintra_op_threads = 1\n{models}'


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = require_tool("redis-server")
    with running_redis(binary, tmp_path_factory.mktemp("redis")) as url:
        yield url


def sample_on_new_connection(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.http_url, timeout=30) as http:
        response = http.post(f"/v1/models/{MODEL}/sample", json=SAMPLE)
    assert response.status_code == 200, response.text


def per_worker(http: httpx.Client) -> tuple[float, float]:
    return tuple(  # type: ignore[return-value]
        metric(http, "latentserve_worker_requests_total", worker=str(index)) for index in (0, 1)
    )


def test_requests_on_one_port_land_in_both_workers_and_metrics_merge(
    tiny_repository: Path, start_server: ServerFactory, redis_url: str
) -> None:
    with (
        start_server(
            tiny_repository, "workers", config(redis_url), extra_args=["--workers", "2"]
        ) as server,
        httpx.Client(base_url=server.http_url, timeout=30) as scrape,
    ):
        sent = 0
        while min(per_worker(scrape)) == 0:  # the kernel picks a worker per connection
            assert sent < 100, f"one worker got every connection: {per_worker(scrape)}"
            sample_on_new_connection(server)
            sent += 1
        before = per_worker(scrape)
        grpc_sent = 0
        while any(now == then for now, then in zip(per_worker(scrape), before, strict=True)):
            assert grpc_sent < 100, f"one worker got every gRPC channel: {per_worker(scrape)}"
            with GrpcClient(server.grpc_target, timeout=30) as client:
                assert len(client.sample(MODEL, n=1, seed=3).images) == 1
            grpc_sent += 1

        ok = {"method": "sample", "status": "ok"}
        assert metric(scrape, "latentserve_requests_total", protocol="rest", **ok) == sent
        assert metric(scrape, "latentserve_requests_total", protocol="grpc", **ok) == grpc_sent
        assert sum(per_worker(scrape)) == metric(scrape, "latentserve_requests_total")
        assert metric(scrape, "latentserve_max_jobs") == 2 * 256  # each worker admits its own
        assert metric(scrape, "latentserve_ready") == 1


def test_sigterm_drains_what_both_workers_accepted_and_exits_0(
    tiny_repository: Path, start_server: ServerFactory, redis_url: str, tmp_path: Path
) -> None:
    one_version = tmp_path / "repository"
    (one_version / MODEL).mkdir(parents=True)
    (one_version / MODEL / "1").symlink_to(tiny_repository / MODEL / "1")
    held = 8
    answers: list[int] = []
    with (
        start_server(
            one_version, "drain", config(redis_url, HELD), extra_args=["--workers", "2"]
        ) as server,
        httpx.Client(base_url=server.http_url, timeout=30) as scrape,
    ):

        def sample() -> None:
            with httpx.Client(base_url=server.http_url, timeout=30) as http:
                answers.append(http.post(f"/v1/models/{MODEL}/sample", json=SAMPLE).status_code)

        clients = [threading.Thread(target=sample) for _ in range(held)]
        for client in clients:
            client.start()
        until(lambda: metric(scrape, "latentserve_requests_in_flight") == held)
        server.process.send_signal(signal.SIGTERM)
        for client in clients:
            client.join(30)
        assert server.process.wait(30) == 0, server.log()
    assert answers == [200] * held
    stopped = [line for line in server.log().splitlines() if "stopped: requests answered" in line]
    assert len(stopped) == 2 and all("in flight: 0" in line for line in stopped), stopped
    # both workers had accepted some of them (each answered at least one)
    assert all("requests answered: ok=" in line for line in stopped), stopped


def test_a_worker_that_dies_stops_the_server_with_exit_code_1(
    tiny_repository: Path, tmp_path: Path, redis_url: str
) -> None:
    server = ServerProcess(
        tiny_repository, tmp_path, config(redis_url), extra_args=["--workers", "2"]
    )
    try:
        children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
        # spawn's resource tracker is a child too; the workers are the ones it spawned
        workers = [int(pid) for pid in children.read_text().split()]
        workers = [pid for pid in workers if "spawn_main" in _cmdline(pid)]
        assert len(workers) == 2, workers
        doomed = workers[0]
        os.kill(doomed, signal.SIGKILL)
        assert server.process.wait(30) == 1, server.log()
        assert "exited (code -9): stopping the others" in server.log()
    finally:
        server.stop()
    assert not Path(f"/proc/{workers[1]}").exists()  # stopped and reaped by the parent


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_workers_without_the_redis_job_store_are_refused_naming_both_settings(
    tiny_repository: Path,
) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "latentserve.cli", "serve", "--repository", str(tiny_repository)]
        + ["--workers", "2", "--http-port", "0", "--grpc-port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("LATENTSERVE_")},
    )
    assert refused.returncode == 2
    assert 'workers: 2 workers need job_store = "redis"' in refused.stderr
