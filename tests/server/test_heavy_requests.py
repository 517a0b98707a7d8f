"""Log-prob work is bounded: too much is refused, the rest computes in chunks, a few at a time,
and the server's memory comes back after the worst request it accepts (a real server)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import grpc
import httpx
import numpy as np
import psutil
import pytest
from helpers.server_process import SERVER_TOML, ServerFactory, ServerProcess, metric
from latentserve.v1 import generative_pb2 as pb
from PIL import Image

MODEL = "vae-tiny"
# The shipped defaults for the work one request may ask for and one graph call computes,
# with one request computing and one waiting, so two at once already fill the limit.
HEAVY_TOML = (
    SERVER_TOML.split("[models.")[0].replace("max_body_bytes = 65536", "max_body_bytes = 1048576")
    + """
max_log_prob_work = 4096
log_prob_chunk_work = 256
max_concurrent_log_prob = 1
max_waiting_log_prob = 1
"""
)
# Resident memory may grow this much over the idle server while the worst allowed request
# runs over and over (measured: ~+15 MB after each round, ~+170 MB at the peak of a
# round; before work was bounded, two 64 x 256 requests took the tiny model to 3.5 GB).
GROWTH_AFTER_MB = 150
GROWTH_PEAK_MB = 500


@pytest.fixture(scope="module")
def server(tiny_repository: Path, start_server: ServerFactory) -> Iterator:
    with start_server(tiny_repository, "heavy", HEAVY_TOML) as process:
        yield process


def pngs(count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(buffer, "PNG")
        out.append(base64.b64encode(buffer.getvalue()).decode())
    return out


def log_prob(http: httpx.Client, images: list[str], samples: int, seed: int = 1) -> httpx.Response:
    body = {"images": images, "samples": samples, "seed": seed}
    return http.post(f"/v1/models/{MODEL}/log-prob", json=body)


def test_work_beyond_the_limit_is_refused_naming_the_fields(
    http: httpx.Client, stub: object
) -> None:
    refused = log_prob(http, pngs(64), 256)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "invalid_argument" and error["field"] == "samples"
    assert "64 x 256 = 16384 exceeds" in error["message"] and "4096" in error["message"]

    images = [base64.b64decode(p) for p in pngs(32)]
    with pytest.raises(grpc.RpcError) as refusal:
        stub.LogProb(pb.LogProbRequest(model=MODEL, images=images, samples=256))
    assert refusal.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ("field", "samples") in refusal.value.trailing_metadata()


def test_a_request_computes_in_bounded_chunks_with_the_same_numbers(http: httpx.Client) -> None:
    images = pngs(6, seed=3)
    before = metric(http, "latentserve_batch_items_count", graph="log_prob")
    whole = log_prob(http, images, 128, seed=5).json()
    # 256 passes per graph call at 128 samples: two images a call, three calls.
    calls = metric(http, "latentserve_batch_items_count", graph="log_prob") - before
    assert calls == 3
    largest = metric(http, "latentserve_batch_items_bucket", graph="log_prob", le="2.0")
    assert largest == metric(http, "latentserve_batch_items_count", graph="log_prob")
    # The noise is drawn for the whole request: its first image's draws are those a
    # one-image request with the same seed gets, so chunking changes no number.
    alone = log_prob(http, images[:1], 128, seed=5).json()
    assert alone["bits_per_dim"][0] == whole["bits_per_dim"][0]
    assert len(whole["bits_per_dim"]) == 6


def test_heavy_requests_beyond_the_waiting_room_are_refused_and_counted(
    http: httpx.Client,
) -> None:
    images = pngs(16, seed=4)
    refused_before = metric(
        http, "latentserve_requests_total", method="log_prob", status="overloaded"
    )
    # Six worst-allowed requests at once: one computes, one waits, the rest are refused.
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: log_prob(http, images, 256), range(6)))
    codes = sorted(a.status_code for a in answers)
    assert set(codes) <= {200, 429} and codes.count(200) >= 2, codes
    refused = [a for a in answers if a.status_code == 429]
    assert refused and all(int(a.headers["retry-after"]) >= 1 for a in refused)
    assert all(a.json()["error"]["code"] == "overloaded" for a in refused)
    counted = metric(http, "latentserve_requests_total", method="log_prob", status="overloaded")
    assert counted - refused_before == len(refused)


def test_memory_returns_after_the_worst_allowed_request(
    server: ServerProcess, http: httpx.Client
) -> None:
    process = psutil.Process(server.process.pid)
    images = pngs(16, seed=6)
    assert log_prob(http, images[:1], 1).status_code == 200  # warm: graphs touched once
    baseline = process.memory_info().rss / 2**20
    peak = baseline
    for round_ in range(3):
        with ThreadPoolExecutor(2) as pool:
            running = [pool.submit(log_prob, http, images, 256, round_) for _ in range(2)]
            while not all(f.done() for f in running):
                peak = max(peak, process.memory_info().rss / 2**20)
                wait(running, timeout=0.02, return_when=FIRST_COMPLETED)
            assert [f.result().status_code for f in running] == [200, 200]
        after = process.memory_info().rss / 2**20
        assert after - baseline < GROWTH_AFTER_MB, (round_, baseline, after)
    assert peak - baseline < GROWTH_PEAK_MB, (baseline, peak)
