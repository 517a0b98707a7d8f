"""``make bench-v2``: perf_analyzer drives a live server over the Open Inference Protocol,
HTTP and gRPC, and the table lands in the README between its markers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from v2 import BEGIN, END, find_perf_analyzer, table, write_readme  # noqa: E402

# Asked once, at collection: a skip must not first build the tiny repository.
BINARY, REASON = find_perf_analyzer()
ROWS = [{"protocol": "http", "concurrency": 4, "infer_per_s": 12.5, "p50_ms": 3.0, "p99_ms": 9.5}]


def test_the_table_replaces_only_what_lies_between_the_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Bench\nbefore\n{BEGIN}\nold table\n{END}\nafter\n")
    write_readme(readme, table(ROWS))
    text = readme.read_text()
    assert "old table" not in text and "| http | 4 | 12.5 | 3.00 | 9.50 |" in text
    assert text.startswith("# Bench\nbefore\n") and text.endswith(f"{END}\nafter\n")


@pytest.mark.slow
@pytest.mark.skipif(BINARY is None, reason=f"perf_analyzer cannot run here: {REASON}")
def test_perf_analyzer_drives_latentserve_over_http_and_grpc(
    tiny_repository: Path, tmp_path: Path
) -> None:
    out = tmp_path / "rows.json"
    command = [
        sys.executable, str(BENCH / "v2.py"), "--repository", str(tiny_repository),
        "--model", "vae-tiny", "--concurrency", "1", "2", "--measurement-ms", "1000",
        "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(out.read_text())
    assert {(r["protocol"], r["concurrency"]) for r in rows} == {
        ("http", 1),
        ("http", 2),
        ("grpc", 1),
        ("grpc", 2),
    }
    assert all(r["infer_per_s"] > 0 for r in rows)
