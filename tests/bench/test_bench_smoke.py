"""The benchmark runs end to end (tiny model, one short repeat) and its wrk parser reads
wrk's real report format."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from rest_load import parse_wrk  # noqa: E402

WRK_REPORT = """Running 2s test @ http://127.0.0.1:8000/v1/models/vae-mnist/sample
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    39.12ms   10.01ms  98.30ms   80.00%
    Req/Sec   817.80    100.00     1.00k    70.00%
  Latency Distribution
     50%   37.44ms
     75%   42.00ms
     90%   50.00ms
     99%   98.30ms
  1636 requests in 2.00s, 1.20MB read
  Non-2xx or 3xx responses: 36
Requests/sec:    818.00
Transfer/sec:    600.00KB
"""


def test_parse_wrk_counts_only_successes() -> None:
    result = parse_wrk(WRK_REPORT, n=1)
    assert result["requests"] == 1600 and result["errors"] == 36
    assert result["images_per_s"] == pytest.approx(818.0 * 1600 / 1636)
    assert result["p50_ms"] == 37.44 and result["p99_ms"] == 98.30


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (make test installs it)")
def test_bench_runs_end_to_end(tiny_repository: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    command = [
        sys.executable, str(BENCH / "run.py"), "--repository", str(tiny_repository),
        "--model", "vae-tiny", "--clients", "4", "--duration", "1", "--warmup", "0.5",
        "--repeats", "1", "--raw-threads", "1", "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    assert set(results) == {"raw-b1-t1", "raw-b32-t1", "grpc-4", "rest-4"}
    for name, figures in results.items():
        assert figures["images_per_s"] > 0, name
        assert figures["errors"] == 0, name
    assert "vs raw b32" in done.stdout


@pytest.mark.slow
def test_family_bench_runs_end_to_end(family_repository: Path, tmp_path: Path) -> None:
    out = tmp_path / "families.json"
    command = [
        sys.executable, str(BENCH / "families.py"), "--repository", str(family_repository),
        "--sizes", "1", "3", "--repeats", "1", "--duration", "0.2", "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(out.read_text())
    assert {(r["family"], r["n"]) for r in rows} == {
        (family, n) for family in ("glow", "nvae", "vqvae", "vqvae2", "pixelcnn") for n in (1, 3)
    }
    for row in rows:
        assert row["direct_images_per_s"] > 0 and row["server_images_per_s"] > 0, row
    assert "| server / direct |" in done.stdout


@pytest.mark.slow
def test_diffusion_bench_quick(diffusion_repository: Path, tmp_path: Path) -> None:
    out = tmp_path / "diffusion.json"
    command = [
        sys.executable, str(BENCH / "diffusion.py"), "--repository", str(diffusion_repository),
        "--model", "ddpm-tiny", "--quick", "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    for mode in ("request", "iteration"):
        sections = results[mode]
        assert sections["capacity"]["images_per_s"] > 0, mode
        assert len(sections["rates"]) == 3, mode
        for row in sections["rates"]:
            assert row["errors"] == 0 and row["completed"] == row["requests"] > 0, row
            for key in ("images_per_s", "p50_ms", "p99_ms", "job_steps_per_s"):
                assert row[key] > 0, (mode, key, row)
            assert row["mean_jobs_per_iteration"] >= 1, row
        ttfs = sections["ttfs"]
        assert ttfs["client_p50_ms"] > 0 and ttfs["server_p50_ms"] > 0, ttfs
        assert ttfs["server_observations"] == ttfs["repeats"], ttfs
        assert 'step_batching = "' + mode + '"' in sections["settings_toml"]
    steps, raw = results["iteration"]["steps"], results["iteration"]["raw"]
    assert steps["job_steps_per_s"] > 0 and raw["job_steps_per_s"] > 0
    assert steps["mean_jobs_per_iteration"] == pytest.approx(steps["jobs"])
    assert "| server / raw |" in done.stdout
