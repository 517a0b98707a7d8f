"""The in-process CPU-per-request benchmark drives the real REST app and gRPC servicer over a
real (tiny) model and reports both figures for each transport (the Open Inference
Protocol's gRPC ModelInfer among them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.slow
def test_request_cpu_runs_end_to_end(tiny_repository: Path, tmp_path: Path) -> None:
    out = tmp_path / "cpu.json"
    command = [
        sys.executable, str(BENCH / "request_cpu.py"), "--repository", str(tiny_repository),
        "--model", "vae-tiny", "--requests", "40", "--concurrency", "8", "--repeats", "1",
        "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    assert set(results) == {"rest", "grpc", "v2-grpc"}
    for transport, figures in results.items():
        # the loop thread's share is part of the whole process's CPU time
        assert 0 < figures["loop_us_per_request"] <= figures["process_us_per_request"], transport
    assert "µs/request" in done.stdout
