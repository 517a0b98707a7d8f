"""``make bench-triton``: perf_analyzer measures latentserve and Triton (PyTriton over the same
sampler graph) side by side; the medians, the table and the plot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.images import assert_a_drawn_png

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

from plots import plot_side_by_side  # noqa: E402
from v2 import find_perf_analyzer  # noqa: E402
from vs_triton import BEGIN, END, medians, sweep_order, table  # noqa: E402

# Where `make bench-triton` puts its tools (build/ only); asked once, at collection.
TOOLS = str(ROOT / "build" / "perf-analyzer" / "bin")
BINARY, REASON = find_perf_analyzer(f"{TOOLS}{os.pathsep}{os.environ.get('PATH', '')}")
TRITON_PYTHON = ROOT / "build" / "pytriton-venv" / "bin" / "python"


def sample(server: str, protocol: str, ips: float, batch: float = 4.0) -> dict:
    return {
        "server": server,
        "protocol": protocol,
        "concurrency": 16,
        "infer_per_s": ips,
        "p50_ms": 1000 / ips,
        "p99_ms": 3000 / ips,
        "mean_batch": batch,
    }


def test_sweeps_alternate_which_server_goes_first() -> None:
    assert sweep_order(0) == ("latentserve", "triton")
    assert sweep_order(1) == ("triton", "latentserve")
    assert sweep_order(2) == sweep_order(0)


def test_rows_are_medians_over_sweeps_and_a_refusal_keeps_its_reason() -> None:
    refused = {"server": "latentserve", "protocol": "grpc", "concurrency": 16, "error": "no RPC"}
    samples = [
        sample("latentserve", "http", 100.0),
        sample("triton", "http", 80.0, batch=30.0),
        refused,
        sample("latentserve", "http", 300.0),
        sample("triton", "http", 50.0, batch=10.0),
        sample("latentserve", "http", 120.0),
        sample("triton", "http", 60.0, batch=20.0),
    ]
    rows = {(r["server"], r["protocol"]): r for r in medians(samples)}
    assert rows["latentserve", "http"]["infer_per_s"] == 120.0
    assert rows["latentserve", "http"]["sweeps"] == 3
    assert rows["triton", "http"]["mean_batch"] == 20.0
    assert rows["latentserve", "grpc"] == {**refused}
    text = table(list(rows.values()), raw=240.0)
    assert "| latentserve | http | 16 | 120 | 0.50 | 8.3 | 25.0 | 4.0 | 2.00 |" in text
    assert "| latentserve | grpc | 16 | refused: no RPC |" in text


def test_the_side_by_side_plot_is_drawn(tmp_path: Path) -> None:
    rows = medians([sample("latentserve", "http", 120.0), sample("triton", "grpc", 90.0)])
    target = tmp_path / "triton.png"
    plot_side_by_side({"raw_b32_images_per_s": 300.0, "rows": rows}, target)
    assert_a_drawn_png(target)


@pytest.mark.slow
@pytest.mark.skipif(BINARY is None, reason=f"perf_analyzer cannot run here: {REASON}")
@pytest.mark.skipif(
    not TRITON_PYTHON.is_file(),
    reason=f"no PyTriton environment at {TRITON_PYTHON} (make bench-triton makes it)",
)
def test_perf_analyzer_measures_latentserve_and_triton_on_the_same_graph(
    tiny_repository: Path, tmp_path: Path
) -> None:
    out, plot, readme = tmp_path / "rows.json", tmp_path / "triton.png", tmp_path / "README.md"
    readme.write_text(f"# Bench\n{BEGIN}\nold\n{END}\n")
    command = [
        sys.executable, str(BENCH / "vs_triton.py"), "--repository", str(tiny_repository),
        "--model", "vae-tiny", "--triton-python", str(TRITON_PYTHON), "--sweeps", "1",
        "--concurrency", "2", "--measurement-ms", "500", "--stability-percentage", "100",
        "--raw-seconds", "0.5", "--json", str(out), "--plot", str(plot),
        "--readme", str(readme),
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{TOOLS}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    rows = {(r["server"], r["protocol"]): r for r in result["rows"]}
    assert set(rows) == {(s, p) for s in ("latentserve", "triton") for p in ("http", "grpc")}
    for key, row in rows.items():
        assert row.get("infer_per_s", 0) > 0, (key, row)
        assert row["mean_batch"] >= 1.0, (key, row)
    assert result["raw_b32_images_per_s"] > 0
    assert "| triton | grpc | 2 |" in readme.read_text() and "old" not in readme.read_text()
    assert_a_drawn_png(plot)
