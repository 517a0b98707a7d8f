"""The benchmark runs end to end (tiny model, one short repeat) and its wrk parser reads
wrk's real report format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.images import assert_a_drawn_png
from helpers.tools import require_tool

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
def test_bench_runs_end_to_end(tiny_repository: Path, tmp_path: Path) -> None:
    require_tool("wrk")
    out = tmp_path / "bench.json"
    command = [
        sys.executable, str(BENCH / "run.py"), "--repository", str(tiny_repository),
        "--model", "vae-tiny", "--clients", "4", "--duration", "1", "--warmup", "0.5",
        "--repeats", "1", "--raw-threads", "1", "--streams", "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    assert set(results) == {"raw-b1-t1", "raw-b32-t1", "grpc-4", "rest-4", "grpcmany-4"}
    assert "4 SampleMany streams" in results["grpcmany-4"]["client"]
    for name, figures in results.items():
        assert figures["images_per_s"] > 0, name
        assert figures["errors"] == 0, name
    assert "vs raw b32" in done.stdout
    assert_a_drawn_png(out.with_suffix(".png"))  # the plot beside the table


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
def test_family_bench_drives_gan_generators(gan_repository: Path, tmp_path: Path) -> None:
    out = tmp_path / "gans.json"
    command = [
        sys.executable, str(BENCH / "families.py"), "--repository", str(gan_repository),
        "--sizes", "1", "4", "--repeats", "1", "--duration", "0.2", "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(out.read_text())
    assert {(r["family"], r["n"]) for r in rows} == {
        (family, n) for family in ("dcgan", "stylegan2") for n in (1, 4)
    }
    assert all(r["direct_images_per_s"] > 0 and r["server_images_per_s"] > 0 for r in rows)


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
    check_steps_vs_raw(results["iteration"])
    assert "| server / raw split |" in done.stdout


def check_steps_vs_raw(iteration: dict) -> None:
    steps = iteration["steps"]
    assert steps["job_steps_per_s"] > 0
    assert steps["mean_jobs_per_iteration"] == pytest.approx(steps["jobs"])
    assert iteration["raw"]["slots"] == 1 and iteration["raw_split"]["slots"] == 2
    for raw in ("raw", "raw_split"):
        assert iteration[raw]["job_steps_per_s"] > 0 and iteration[raw]["rows"] == 16, raw
    assert all(r > 0 for r in iteration["steps_ratios"].values()), iteration["steps_ratios"]


@pytest.mark.slow
def test_text_to_image_bench_quick(text_repository: Path, tmp_path: Path) -> None:
    out = tmp_path / "t2i.json"
    command = [
        sys.executable, str(BENCH / "diffusion.py"), "--repository", str(text_repository),
        "--model", "ldm-tiny", "--method", "text-to-image", "--quick", "--rates", "5",
        "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    assert results["method"] == "text-to-image"
    for mode in ("request", "iteration"):
        (row,) = results[mode]["rates"]
        assert row["errors"] == 0 and row["completed"] == row["requests"] > 0, row
    check_steps_vs_raw(results["iteration"])
    alone, together = results["iteration"]["stages"]
    assert (alone["concurrency"], together["concurrency"]) == (1, 8)
    for row in (alone, together):
        assert len(row["rounds"]) == row["repeats"] == 2, row
        for stage in ("text_encode", "denoise", "decode"):
            assert row[f"{stage}_ms"] > 0 and row[f"raw_{stage}_ms"] > 0, (stage, row)
        # the stages happen inside the request: together they take less than it
        assert row["text_encode_ms"] + row["denoise_ms"] + row["decode_ms"] < row["client_mean_ms"]
    assert "| client / by hand |" in done.stdout
