"""The benchmarks' plots draw the JSON their scripts write (the shapes bench/run.py and
bench/diffusion.py produce)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from helpers.images import assert_a_drawn_png

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from plots import parse_run_report, plot_beside, plot_diffusion, plot_load  # noqa: E402


def figures(images_per_s: float, p50: float, p99: float) -> dict:
    return {"images_per_s": images_per_s, "p50_ms": p50, "p99_ms": p99, "errors": 0}


def test_the_load_plot_is_drawn_beside_its_json(tmp_path: Path) -> None:
    results = {
        "raw-b1-t1": figures(1500.0, 0.6, 1.0),
        "raw-b32-t1": figures(2100.0, 14.7, 20.4),
        "rest-16": figures(700.0, 21.0, 40.0),
        "grpc-16": figures(660.0, 24.0, 45.0),
    }
    source = tmp_path / "bench.json"
    source.write_text(json.dumps(results))
    assert plot_beside(source, plot_load) == tmp_path / "bench.png"
    assert_a_drawn_png(tmp_path / "bench.png")


def test_the_diffusion_plot_draws_both_batching_modes(tmp_path: Path) -> None:
    def rates(scale: float) -> list[dict]:
        return [
            {"rate": r, "images_per_s": r * scale, "p99_ms": 1000.0 / scale}
            for r in (1.0, 2.0, 4.0)
        ]

    results = {
        "model": "ddpm-mnist",
        "method": "sample",
        "cpu_count": 2,
        "request": {"rates": rates(0.5)},
        "iteration": {"rates": rates(0.9)},
    }
    plot_diffusion(results, tmp_path / "diffusion.png")
    assert_a_drawn_png(tmp_path / "diffusion.png")


REPORT = """config          images/s   p50 ms   p99 ms vs raw b32  errors  client (runs: images/s)
raw-b32-tauto     3335.6     8.72    16.09     1.000x       0  onnxruntime in-process [2984.0]
grpc-32            890.9    35.15    66.73     0.267x       0  grpc.aio (python, 1 process) [890.9]
# ceiling raw-b32-tauto: 0.30 ms of compute per image
"""


def test_a_printed_report_reads_back_as_its_json(tmp_path: Path) -> None:
    rows = parse_run_report(REPORT)
    assert rows == {
        "raw-b32-tauto": {"images_per_s": 3335.6, "p50_ms": 8.72, "p99_ms": 16.09},
        "grpc-32": {"images_per_s": 890.9, "p50_ms": 35.15, "p99_ms": 66.73},
    }
    plot_load(rows, tmp_path / "published.png", note="published figures")
    assert_a_drawn_png(tmp_path / "published.png")
