"""``ServerMetrics`` of several workers (``workers`` > 1): each worker process records into
prometheus_client's multiprocess files and one scrape merges them, each gauge by its
declared mode. Two real processes record; this one scrapes their folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from latentserve.server.metrics import MULTIPROC_DIR_ENV, multiprocess_scrape

# One worker: answers ``requests`` requests, sets its gauges, then a version it served
# goes away (a series multiprocess mode cannot remove).
WORKER = """
import sys
from prometheus_client import CollectorRegistry
from latentserve.server.metrics import ServerMetrics, multiprocess_scrape

index, requests, ready = (int(arg) for arg in sys.argv[1:])
metrics = ServerMetrics(CollectorRegistry(), multiprocess_scrape(), worker=index)
for _ in range(requests):
    metrics.record_request("vae@1", "sample", "rest", "ok")
metrics.max_jobs.set(256)
metrics.ready.set(ready)
metrics.in_flight.labels("rest").set(index + 1)
metrics.model_versions.labels("vae@1", "serving").set(1)
metrics.drop(metrics.model_versions, "vae@1", "serving")
"""


def run_worker(folder: Path, index: int, requests: int, ready: int) -> None:
    env = {**os.environ, MULTIPROC_DIR_ENV: str(folder)}
    subprocess.run(
        [sys.executable, "-c", WORKER, str(index), str(requests), str(ready)],
        env=env,
        check=True,
        timeout=60,
    )


def test_a_scrape_merges_every_workers_series_by_their_modes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_worker(tmp_path, 0, requests=3, ready=1)
    run_worker(tmp_path, 1, requests=5, ready=0)
    monkeypatch.setenv(MULTIPROC_DIR_ENV, str(tmp_path))
    scrape = multiprocess_scrape()
    assert scrape is not None
    value = scrape.get_sample_value
    ok = {"model": "vae@1", "method": "other", "protocol": "rest", "status": "ok"}
    assert value("latentserve_requests_total", ok) == 8  # counters: summed
    assert value("latentserve_worker_requests_total", {"worker": "0"}) == 3
    assert value("latentserve_worker_requests_total", {"worker": "1"}) == 5
    assert value("latentserve_max_jobs") == 512  # what the server admits: summed
    assert value("latentserve_requests_in_flight", {"protocol": "rest"}) == 3
    assert value("latentserve_ready") == 0  # ready only when every worker is
    # a removed series reads 0, not its last value
    assert value("latentserve_model_versions", {"model": "vae@1", "state": "serving"}) == 0
    # one worker's process figures would pass for the server's: left out
    assert value("latentserve_process_cpu_seconds_total") is None


def test_one_process_scrapes_its_own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_DIR_ENV, raising=False)
    assert multiprocess_scrape() is None
