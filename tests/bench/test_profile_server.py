"""The server profile sorts stacks into the right parts, and runs end to end against a
real server under both transports' load clients (tiny model, one short window)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.tools import require_tool

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from profile_parts import parts, thread_group  # noqa: E402

LOOP = "thread (7): MainThread;run (uvloop/__init__.py:92)"
RAW = f"""{LOOP};Runner.run (asyncio/runners.py:118) 50
{LOOP};sample (server/frontends/rest/sampling.py:71);batch_to_pngs (server/codecs.py:134);_save (PIL/PngImagePlugin.py:1560) 20
{LOOP};RefuseWhileDraining.__call__ (server/frontends/rest/draining.py:26);Router.__call__ (starlette/routing.py:683) 12
{LOOP};within (server/engine/deadlines.py:79);Timeout.__init__ (asyncio/timeouts.py:40) 8
{LOOP};GenerativeService._track (server/engine/service.py:580);MetricWrapperBase.labels (prometheus_client/metrics.py:181) 6
{LOOP};LatentDecoderPipeline.draw (server/pipelines/latent_decoder.py:41);rng (server/pipelines/noise.py:14) 4
thread (9): AnyIO worker thread;WorkerThread.run (anyio/_backends/_asyncio.py:1113);Condition.wait (threading.py:327) 99
"""  # noqa: E501


def test_stacks_are_charged_to_the_innermost_part_that_owns_them() -> None:
    assert parts(RAW.splitlines()) == {
        "event loop": 50,
        "PNG encoding": 20,
        "routing, middleware, DI": 12,  # the middleware's own frame is not the leaf
        "admission, limits, interceptors": 8,  # asyncio's timeout, opened by the deadline
        "metrics": 6,
        "noise": 4,
    }  # the idle worker thread is left out


def test_threads_are_grouped_by_their_python_names() -> None:
    assert thread_group("thread (7): MainThread") == "loop"
    assert thread_group("batch-sampler_0") == "graph"
    assert thread_group("AnyIO worker thread") == "other"


@pytest.mark.slow
def test_profile_runs_end_to_end(tiny_repository: Path, tmp_path: Path) -> None:
    require_tool("wrk")
    out = tmp_path / "profile.json"
    command = [
        sys.executable, str(BENCH / "profile_server.py"), "--repository", str(tiny_repository),
        "--model", "vae-tiny", "--clients", "4", "--duration", "1", "--warmup", "0.5",
        "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    assert set(results) == {"rest-4", "grpc-4"}
    for name, figures in results.items():
        assert figures["images"] > 0, name
        threads = figures["threads_ms_per_image"]
        assert threads["loop"] > 0, name
        # The kernel counts CPU time in clock ticks (10 ms): wrk's few milliseconds in a
        # 1-second window may round to none, the Python gRPC client's never do.
        assert figures["client_ms_per_image"] > (0 if name.startswith("grpc") else -1e-9), name
        assert sum(threads.values()) == pytest.approx(figures["server_ms_per_image"], rel=0.25)
    assert "ms/image = loop thread" in done.stdout
