"""Plots of the benchmarks' JSON, written beside each table: ``bench/run.py --json x.json``
and ``bench/diffusion.py --json x.json`` also write ``x.png``; ``make pictures`` copies them
into the documentation. matplotlib draws off-screen (Agg), so no display is needed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MODES = ("request", "iteration")  # bench/diffusion.py's step batching modes


def _load(source: Path | dict[str, Any]) -> dict[str, Any]:
    return source if isinstance(source, dict) else json.loads(Path(source).read_text())


def _finish(figure: Any, path: Path, caption: str) -> None:
    figure.text(0.01, 0.01, caption, fontsize=7, color="0.35")
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    figure.savefig(path, dpi=80)
    plt.close(figure)


def plot_load(source: Path | dict[str, Any], path: Path, note: str = "") -> None:
    """bench/run.py: images/s per row (raw ONNX Runtime, REST, gRPC) and p50/p99 latency
    of the served rows."""
    results = _load(source)
    names = list(results)
    served = [n for n in names if not n.startswith("raw")]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    colours = ["0.6" if n.startswith("raw") else "tab:blue" for n in names]
    left.barh(names, [results[n]["images_per_s"] for n in names], color=colours)
    left.set_xlabel("images/s (median of repeats)")
    left.invert_yaxis()
    p50 = [results[n]["p50_ms"] for n in served]
    p99 = [results[n]["p99_ms"] for n in served]
    rows = range(len(served))
    right.barh([r - 0.2 for r in rows], p50, height=0.4, label="p50")
    right.barh([r + 0.2 for r in rows], p99, height=0.4, label="p99")
    right.set_yticks(list(rows), served)
    right.invert_yaxis()
    right.set_xlabel("latency, ms")
    right.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, frameon=False)
    legend = "grey: raw ONNX Runtime on the same graph (the ceiling); blue: served"
    _finish(figure, path, f"{legend}. {note}".strip(". ") if note else legend)


def plot_diffusion(source: Path | dict[str, Any], path: Path) -> None:
    """bench/diffusion.py: images/s and p99 latency against the Poisson arrival rate, for
    iteration- and request-level step batching."""
    results = _load(source)
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    for mode in MODES:
        rows = results[mode]["rates"]
        rates = [row["rate"] for row in rows]
        left.plot(rates, [row["images_per_s"] for row in rows], marker="o", label=mode)
        right.plot(rates, [row["p99_ms"] / 1000 for row in rows], marker="o", label=mode)
    left.set_xlabel("arrival rate, requests/s")
    left.set_ylabel("images/s")
    right.set_xlabel("arrival rate, requests/s")
    right.set_ylabel("p99 latency, s")
    left.legend(title="step batching")
    caption = f"{results.get('model', '')} {results.get('method', '')}, "
    _finish(figure, path, caption + f"{results.get('cpu_count', '?')} CPUs")


def plot_side_by_side(source: Path | dict[str, Any], path: Path) -> None:
    """bench/vs_triton.py: images/s and p99 latency of latentserve and Triton per (protocol,
    concurrency), measured by perf_analyzer, with raw ONNX Runtime batch 32 as a line."""
    results = _load(source)
    rows = [r for r in results["rows"] if "error" not in r]
    loads = list(dict.fromkeys((r["protocol"], r["concurrency"]) for r in rows))
    servers = list(dict.fromkeys(r["server"] for r in rows))
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    width = 0.8 / max(len(servers), 1)
    for i, server in enumerate(servers):
        found = {(r["protocol"], r["concurrency"]): r for r in rows if r["server"] == server}
        at = [k + (i - (len(servers) - 1) / 2) * width for k in range(len(loads))]
        ips = [found[x]["infer_per_s"] if x in found else 0.0 for x in loads]
        p99 = [found[x]["p99_ms"] if x in found else 0.0 for x in loads]
        left.bar(at, ips, width=width, label=server)
        right.bar(at, p99, width=width, label=server)
    names = [f"{protocol}\n{concurrency} clients" for protocol, concurrency in loads]
    for axes in (left, right):
        axes.set_xticks(range(len(loads)), names)
    left.axhline(results["raw_b32_images_per_s"], color="0.5", linestyle="--", label="raw b32")
    left.set_ylabel("images/s (median of sweeps)")
    right.set_ylabel("p99 latency, ms")
    left.legend(fontsize=7)
    _finish(figure, path, "perf_analyzer against both servers on the same graph")


_REPORT_ROW = re.compile(
    r"^(?P<name>(raw|grpc|rest)-\S+)\s+(?P<ips>[\d.]+)\s+(?P<p50>[\d.]+)\s+(?P<p99>[\d.]+)\s",
    re.M,
)


def parse_run_report(text: str) -> dict[str, dict[str, float]]:
    """The rows of bench/run.py's printed table (as bench/README.md quotes it) in the
    shape of its JSON, so published figures can be plotted too."""
    return {
        m["name"]: {
            "images_per_s": float(m["ips"]),
            "p50_ms": float(m["p50"]),
            "p99_ms": float(m["p99"]),
        }
        for m in _REPORT_ROW.finditer(text)
    }


def plot_beside(json_path: Path, plot: Any) -> Path:
    """Draw ``plot`` of ``json_path`` into the same name with ``.png``."""
    target = json_path.with_suffix(".png")
    plot(json_path, target)
    return target
