"""perf_analyzer against latentserve over the Open Inference Protocol (HTTP and gRPC).

The same tool measures Triton, so latentserve and Triton can be compared side by side. It
sends the model's default method (``sample`` for vae-mnist) with the inputs its V2
metadata lists, filled from ``INPUT_VALUES``, at each ``--concurrency``; each row is
perf_analyzer's own throughput and latency percentiles. With no ``--url`` it starts a
server on free loopback ports. ``--readme`` writes the table into bench/README.md between
its markers.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import httpx
from latentserve.clients.local import LocalServer

HERE = Path(__file__).resolve().parent
BEGIN, END = "<!-- bench-v2:begin -->", "<!-- bench-v2:end -->"
# The value each input gets, by name: one image per request, a fixed seed.
INPUT_VALUES = {"n": 1, "seed": 7, "temperature": 1.0, "prompt": "a handwritten 3"}


def find_perf_analyzer(search: str | None = None) -> tuple[str | None, str]:
    """The perf_analyzer binary (on ``search``, a PATH-like list, default PATH) and "", or
    None and why it cannot run here."""
    found = shutil.which("perf_analyzer", path=search)
    if found is None:
        try:
            import perf_analyzer  # the perf-analyzer package ships the binary in bin/
        except ImportError:
            return None, "perf_analyzer is not installed (make bench-v2 installs perf-analyzer)"
        candidate = Path(perf_analyzer.__file__).parent / "bin" / "perf_analyzer"
        if not candidate.is_file():
            return None, (
                "the perf-analyzer package installed here ships no binary (no wheel for this "
                "platform: its wheels need glibc 2.38 or newer)"
            )
        found = str(candidate)
    try:
        done = subprocess.run([found, "--help"], capture_output=True, text=True, timeout=30)
    except OSError as exc:
        return None, f"{found} does not start: {exc}"
    if "GLIBC" in done.stderr or "error while loading" in done.stderr:
        return None, f"{found} does not start: {done.stderr.strip().splitlines()[0]}"
    return found, ""


def input_data(url: str, model: str) -> dict:
    """perf_analyzer's --input-data: one request's tensors, every input the metadata lists."""
    metadata = httpx.get(f"{url}/v2/models/{model}", timeout=30).json()
    missing = [t["name"] for t in metadata["inputs"] if t["name"] not in INPUT_VALUES]
    step: dict[str, list] = {}
    for tensor in metadata["inputs"]:
        if tensor["name"] in missing:
            continue
        step[tensor["name"]] = [INPUT_VALUES[tensor["name"]]]
    if missing:
        raise SystemExit(f"no bench value for {model}'s inputs {missing}: add them to INPUT_VALUES")
    return {"data": [step]}


class PerfAnalyzerFailed(RuntimeError):
    """perf_analyzer exited with an error (its output is the message)."""


def perf_analyzer(
    binary: str,
    protocol: str,
    address: str,
    model: str,
    concurrency: int,
    data: Path,
    measurement_ms: int,
    timeout: float,
    extra: Sequence[str] = (),
) -> dict:
    """One perf_analyzer run at one concurrency: its throughput and latency percentiles;
    ``extra`` are further perf_analyzer flags."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.csv"
        command = [
            binary, "-m", model, "-u", address, "-i", protocol,
            "--input-data", str(data), "--concurrency-range", f"{concurrency}:{concurrency}",
            "--measurement-interval", str(measurement_ms), "-f", str(report), *extra,
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise PerfAnalyzerFailed(
                f"perf_analyzer failed ({protocol}):\n{done.stdout}\n{done.stderr}"
            )
        row = next(csv.DictReader(report.read_text().splitlines()))
    return {
        "protocol": protocol,
        "concurrency": concurrency,
        "infer_per_s": float(row["Inferences/Second"]),
        "p50_ms": float(row["p50 latency"]) / 1000,
        "p99_ms": float(row["p99 latency"]) / 1000,
    }


def run(binary: str, protocol: str, address: str, model: str, concurrency: int, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "input.json"
        data.write_text(json.dumps(input_data(args.url_for_metadata, model)))
        try:
            return perf_analyzer(
                binary, protocol, address, model, concurrency, data,
                args.measurement_ms, args.timeout,
            )  # fmt: skip
        except PerfAnalyzerFailed as exc:
            raise SystemExit(str(exc)) from None


def table(rows: list[dict]) -> str:
    lines = [
        "| protocol | concurrency | infer/s | p50 ms | p99 ms |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['protocol']} | {r['concurrency']} | {r['infer_per_s']:.1f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} |"
        )
    return "\n".join(lines)


def write_readme(readme: Path, text: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace what lies between the ``begin`` and ``end`` markers of ``readme`` by ``text``."""
    content = readme.read_text()
    if begin not in content or end not in content:
        raise SystemExit(f"{readme} has no {begin} ... {end} section")
    head, _, rest = content.partition(begin)
    _, _, tail = rest.partition(end)
    readme.write_text(f"{head}{begin}\n{text}\n{end}{tail}")


def measure(args: argparse.Namespace, binary: str, url: str, grpc_target: str) -> list[dict]:
    args.url_for_metadata = url
    addresses = {"http": url.removeprefix("http://"), "grpc": grpc_target}
    return [
        run(binary, protocol, addresses[protocol], args.model, concurrency, args)
        for protocol in args.protocols
        for concurrency in args.concurrency
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", type=Path, default=Path("models"))
    parser.add_argument("--model", default="vae-mnist")
    parser.add_argument("--url", help="REST base URL of a running server (default: start one)")
    parser.add_argument("--grpc", help="gRPC host:port of that running server")
    parser.add_argument("--protocols", nargs="+", default=["http", "grpc"])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--measurement-ms", type=int, default=5000)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--readme", type=Path, help="write the table into this README")
    args = parser.parse_args()
    binary, reason = find_perf_analyzer()
    if binary is None:
        print(f"cannot run perf_analyzer here: {reason}", file=sys.stderr)
        return 2
    if args.url:
        rows = measure(args, binary, args.url, args.grpc)
    else:
        with LocalServer(args.repository, []) as server:
            rows = measure(args, binary, server.http_url, server.grpc_target)
    text = table(rows)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(text)
    print(f"# {os.cpu_count()} CPUs, load average {load}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    if args.readme:
        write_readme(args.readme, f"{text}\n\n{os.cpu_count()} CPUs, load average {load}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
