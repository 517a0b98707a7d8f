"""latentserve and Triton side by side, measured by the same tool on the same graph.

perf_analyzer drives both servers over the Open Inference Protocol with the same input
data (one image per request, a fixed seed, temperature 1): latentserve serving the
model's ``sample`` method, and Triton (through PyTriton, ``bench/triton_server.py`` in its
own virtual environment) binding ONNX Runtime over the same sampler graph file with its
dynamic batcher. Each sweep measures every (server, protocol, concurrency), the servers'
order alternating between sweeps, plus raw ONNX Runtime at batch 32 on the same graph
(the ceiling); the table reports medians over sweeps, and the mean batch each server
formed (from its own metrics). ``--readme`` writes the table between its markers in
bench/README.md, ``--plot`` draws it.

A combination perf_analyzer cannot measure keeps its error line in place of figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import prom
import raw_ort
from latentserve.clients.local import LocalServer, free_port
from v2 import PerfAnalyzerFailed, find_perf_analyzer, input_data, perf_analyzer, write_readme

HERE = Path(__file__).resolve().parent
BEGIN, END = "<!-- bench-triton:begin -->", "<!-- bench-triton:end -->"
SERVERS = ("latentserve", "triton")
RAW_BATCH = 32


class Triton:
    """The PyTriton server process, its addresses, and its batch statistics."""

    def __init__(self, python: Path, repository: Path, model: str, options: list[str]) -> None:
        self.ports = {name: free_port() for name in ("http", "grpc", "metrics")}
        self.command = [
            str(python), str(HERE / "triton_server.py"), "--repository", str(repository),
            "--model", model, "--http-port", str(self.ports["http"]),
            "--grpc-port", str(self.ports["grpc"]), "--metrics-port", str(self.ports["metrics"]),
            *options,
        ]  # fmt: skip
        self.model = model
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log")  # noqa: SIM115
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> dict[str, str]:
        return {p: f"127.0.0.1:{self.ports[p]}" for p in ("http", "grpc")}

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['metrics']}"

    def start(self, timeout: float) -> None:
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT)
        ready = f"http://{self.address['http']}/v2/models/{self.model}/ready"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Triton server exited:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(ready, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)  # polling a port that is not open yet; the deadline bounds it
        raise RuntimeError(
            f"the Triton server was not ready in {timeout:.0f} s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def log_tail(self, lines: int = 40) -> str:
        self.log.flush()
        return "\n".join(Path(self.log.name).read_text().splitlines()[-lines:])


@contextmanager
def running_triton(python: Path, repository: Path, model: str, options: list[str], timeout: float):
    triton = Triton(python, repository, model, options)
    try:
        triton.start(timeout)
        yield triton
    finally:
        triton.stop()


def mean_batch(server: str, before: prom.Snapshot, after: prom.Snapshot) -> float:
    """Items per executed batch between two snapshots of the server's own metrics."""
    if server == "triton":
        # Triton's counters, as prometheus_client's parser names counter samples
        items = prom.delta(before, after, "nv_inference_count_total")
        batches = prom.delta(before, after, "nv_inference_exec_count_total")
    else:
        items = prom.delta(before, after, "latentserve_batch_items_sum")
        batches = prom.delta(before, after, "latentserve_batch_items_count")
    return items / batches if batches else float("nan")


def sweep_order(sweep: int) -> tuple[str, ...]:
    """The servers in the order sweep ``sweep`` measures them: alternating, so neither
    always runs first on a machine that warms or loads up over time."""
    return SERVERS if sweep % 2 == 0 else SERVERS[::-1]


def medians(samples: list[dict]) -> list[dict]:
    """One row per (server, protocol, concurrency): the median of each figure over sweeps;
    a combination perf_analyzer refused keeps its reason."""
    keys = list(dict.fromkeys((s["server"], s["protocol"], s["concurrency"]) for s in samples))
    rows = []
    for key in keys:
        group = [s for s in samples if (s["server"], s["protocol"], s["concurrency"]) == key]
        measured = [s for s in group if "error" not in s]
        row = dict(zip(("server", "protocol", "concurrency"), key, strict=True))
        if not measured:
            row["error"] = group[0]["error"]
        else:
            for figure in ("infer_per_s", "p50_ms", "p99_ms", "mean_batch"):
                row[figure] = statistics.median(s[figure] for s in measured)
            row["sweeps"] = len(measured)
        rows.append(row)
    return rows


def table(rows: list[dict], raw: float) -> str:
    """Markdown: each served row as images/s, its share of raw batch-32, p50/p99 and mean
    batch, with latentserve ÷ Triton where both were measured."""
    by_key = {(r["server"], r["protocol"], r["concurrency"]): r for r in rows}
    lines = [
        "| server | protocol | concurrency | images/s | × raw b32 | p50 ms | p99 ms | mean batch "
        "| latentserve ÷ Triton |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        head = f"| {r['server']} | {r['protocol']} | {r['concurrency']} |"
        if "error" in r:
            lines.append(f"{head} refused: {r['error']} | | | | | |")
            continue
        other = by_key.get(("triton", r["protocol"], r["concurrency"]), {})
        ratio = ""
        if r["server"] == "latentserve" and "infer_per_s" in other:
            ratio = f"{r['infer_per_s'] / other['infer_per_s']:.2f}"
        lines.append(
            f"{head} {r['infer_per_s']:.0f} | {r['infer_per_s'] / raw:.2f} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['mean_batch']:.1f} | {ratio} |"
        )
    return "\n".join(lines)


def refusal(exc: PerfAnalyzerFailed) -> str:
    """perf_analyzer's own error line, short enough for a table cell."""
    said = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
    lines = [line for line in said if "error" in line.lower() or "fail" in line.lower()]
    return (lines or said or [str(exc)])[-1].replace("|", "/")[:120]


def measure_one(server: str, protocol: str, concurrency: int, target: dict, args) -> dict:
    sample = {"server": server, "protocol": protocol, "concurrency": concurrency}
    before = prom.scrape(target["metrics"])
    try:
        figures = perf_analyzer(
            args.binary, protocol, target[protocol], args.model, concurrency,
            args.data, args.measurement_ms, args.timeout,
            ["--stability-percentage", str(args.stability_percentage)],
        )  # fmt: skip
    except PerfAnalyzerFailed as exc:
        return {**sample, "error": refusal(exc)}
    after = prom.scrape(target["metrics"])
    return {**figures, **sample, "mean_batch": mean_batch(server, before, after)}


def raw_images_per_s(args) -> float:
    manifests = (args.repository / args.model).glob("*/manifest.json")
    latest = max(manifests, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1)
    version_dir = latest.parent  # the version both servers serve: the highest
    session, spec, _ = raw_ort.load_graph(version_dir, ["CPUExecutionProvider"])
    return raw_ort.measure(session, spec, RAW_BATCH, args.raw_seconds)["images_per_s"]


def sweeps(args, targets: dict[str, dict]) -> tuple[list[dict], list[float]]:
    samples, raws = [], []
    for sweep in range(args.sweeps):
        raws.append(raw_images_per_s(args))
        for server in sweep_order(sweep):
            for protocol in args.protocols:
                for concurrency in args.concurrency:
                    sample = measure_one(server, protocol, concurrency, targets[server], args)
                    print(json.dumps({"sweep": sweep, **sample}), flush=True)
                    samples.append(sample)
    return samples, raws


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", type=Path, default=Path("models"))
    parser.add_argument("--model", default="vae-mnist")
    parser.add_argument(
        "--triton-python", type=Path, default=Path("build/pytriton-venv/bin/python")
    )
    parser.add_argument("--protocols", nargs="+", default=["http", "grpc"])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--sweeps", type=int, default=3)
    parser.add_argument("--measurement-ms", type=int, default=5000)
    parser.add_argument(
        "--stability-percentage",
        type=float,
        default=10.0,
        help="perf_analyzer's: how far apart its windows may be to count as stable",
    )
    parser.add_argument("--raw-seconds", type=float, default=5.0)
    parser.add_argument("--max-batch-size", type=int, default=64, help="Triton's")
    parser.add_argument("--max-queue-delay-us", type=int, default=2000, help="Triton's")
    parser.add_argument("--start-timeout", type=float, default=180.0)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--readme", type=Path, help="write the table into this README")
    parser.add_argument("--plot", type=Path, help="draw the rows into this PNG")
    args = parser.parse_args()
    args.binary, reason = find_perf_analyzer()
    if args.binary is None:
        print(f"cannot run perf_analyzer here: {reason}", file=sys.stderr)
        return 2
    if not args.triton_python.is_file():
        print(f"no PyTriton environment at {args.triton_python} (make bench-triton makes it)")
        return 2
    triton_options = [
        "--max-batch-size", str(args.max_batch_size),
        "--max-queue-delay-us", str(args.max_queue_delay_us),
    ]  # fmt: skip
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalServer(args.repository, []) as latentserve,
        running_triton(
            args.triton_python, args.repository, args.model, triton_options, args.start_timeout
        ) as triton,
    ):
        args.data = Path(tmp) / "input.json"
        args.data.write_text(json.dumps(input_data(latentserve.http_url, args.model)))
        targets = {
            "latentserve": {
                "http": latentserve.http_url.removeprefix("http://"),
                "grpc": latentserve.grpc_target,
                "metrics": latentserve.http_url,
            },
            "triton": {**triton.address, "metrics": triton.metrics_url},
        }
        samples, raws = sweeps(args, targets)
    raw = statistics.median(raws)
    rows = medians(samples)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    conditions = (
        f"{args.model}, perf_analyzer at n = 1 per request, {args.sweeps} alternating sweeps "
        f"of {args.measurement_ms} ms windows, medians; raw ONNX Runtime batch {RAW_BATCH}: "
        f"{raw:.0f} images/s; Triton max batch {args.max_batch_size}, queue delay "
        f"{args.max_queue_delay_us} µs; {os.cpu_count()} CPUs, load average {load}."
    )
    text = table(rows, raw)
    print(f"{text}\n\n{conditions}")
    result = {"raw_b32_images_per_s": raw, "rows": rows, "samples": samples, "note": conditions}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.readme:
        write_readme(args.readme, f"{text}\n\n{conditions}", BEGIN, END)
    if args.plot:
        from plots import plot_side_by_side

        plot_side_by_side(result, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
