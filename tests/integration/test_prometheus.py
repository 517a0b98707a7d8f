"""A real Prometheus scrapes a real latentserve process and answers a latency-quantile query.

(``promtool check metrics`` runs once, in tests/server/test_rest_integration.py.) Needs the
``prometheus`` binary (``make test`` installs it with apt); skipped only when it is absent,
and failed instead when ``CI`` is set.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.prometheus import query, running_prometheus
from helpers.server_process import ServerFactory, ServerProcess
from helpers.tools import require_tool
from latentserve.clients import GrpcClient, RestClient

LATENCY_HISTOGRAM = "latentserve_request_duration_seconds"
P99_QUERY = f"histogram_quantile(0.99, sum(rate({LATENCY_HISTOGRAM}_bucket[1m])) by (le))"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def prometheus_binary() -> str:
    """Checked before the module's server starts (autouse fixtures come first)."""
    return require_tool("prometheus")


@pytest.fixture(scope="module")
def server(tiny_repository: Path, start_server: ServerFactory) -> Iterator[ServerProcess]:
    with start_server(tiny_repository, "scraped", "") as running:
        yield running


def _traffic(server: ServerProcess, rounds: int = 1) -> None:
    """A few requests over both transports, so every latency series has observations."""
    with RestClient(server.http_url) as rest, GrpcClient(server.grpc_target) as grpc_client:
        for _ in range(rounds):
            rest.sample("vae-tiny", n=2, seed=1)
            grpc_client.sample("vae-tiny", n=2, seed=2)
            rest.list_models()


@pytest.fixture
def prometheus(server: ServerProcess, prometheus_binary: str, tmp_path: Path) -> Iterator[str]:
    """A Prometheus server scraping ``server`` every second; yields its base URL."""
    with running_prometheus(prometheus_binary, [f"127.0.0.1:{server.http_port}"], tmp_path) as url:
        yield url


def test_prometheus_answers_the_p99_latency_query(server: ServerProcess, prometheus: str) -> None:
    # Keep traffic flowing between scrapes until rate() over the buckets has two samples
    # that differ; bounded at 60 s.
    deadline = time.monotonic() + 60
    p99 = math.nan
    while time.monotonic() < deadline:
        _traffic(server, rounds=3)
        result = query(prometheus, P99_QUERY)
        if result:
            p99 = float(result[0]["value"][1])
            if math.isfinite(p99):
                break
        time.sleep(0.5)
    assert math.isfinite(p99), f"no finite p99 from Prometheus: last result {result}"
    assert 0 < p99 <= 10.0  # seconds, within the histogram's buckets

    up = query(prometheus, 'up{job="latentserve"}')
    assert [float(series["value"][1]) for series in up] == [1.0]
