"""Benchmark: the server under concurrent load (REST and gRPC) against raw ONNX Runtime on
the same graph, measured in one run so the comparison shares the machine's state.

Runs each configuration ``--repeats`` times and reports medians. With no ``--url`` it
starts its own server on free loopback ports and stops it at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from latentserve.clients import GrpcClient
from latentserve.clients.local import LocalServer
from plots import plot_beside, plot_load
from raw_ort import load_graph, measure
from rest_load import run_wrk

HERE = Path(__file__).resolve().parent


def grpc_load(
    target: str, model: str, concurrency: int, duration: float, warmup: float, streams: int = 0
) -> dict:
    """The gRPC load generator runs in its own process (see grpc_load.py); ``streams`` > 0:
    its callers share that many SampleMany calls instead of making unary ones."""
    command = [
        sys.executable, str(HERE / "grpc_load.py"), "--target", target, "--model", model,
        "--concurrency", str(concurrency), "--duration", str(duration), "--warmup", str(warmup),
        "--streams", str(streams),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict]) -> dict:
    """Median of each figure over repeated runs (the client name is kept)."""
    keys = ("images_per_s", "p50_ms", "p99_ms", "requests", "errors")
    merged = {k: statistics.median(r[k] for r in runs) for k in keys}
    if "ms_per_image" in runs[0]:
        merged["ms_per_image"] = statistics.median(r["ms_per_image"] for r in runs)
    merged["client"] = runs[0]["client"]
    merged["runs"] = [round(r["images_per_s"], 1) for r in runs]
    return merged


def benchmark(args: argparse.Namespace, url: str, target: str) -> dict[str, dict]:
    with GrpcClient(target) as client:  # raw ORT runs the version and providers served
        info = client.get_model(args.model)
    version_dir = args.repository / info.name / info.version
    sessions = {
        threads: load_graph(version_dir, info.execution_providers, threads)
        for threads in args.raw_threads
    }
    role = next(iter(sessions.values()))[2]
    print(
        f"# {info.name}@{info.version}: raw graph = {role} on {info.execution_providers}; "
        f"{args.repeats} repeats, medians",
        flush=True,
    )
    runs: dict[str, list[dict]] = {}
    for repeat in range(args.repeats):
        for threads, (session, spec, _) in sessions.items():
            for batch in (1, 32):
                runs.setdefault(f"raw-b{batch}-t{threads or 'auto'}", []).append(
                    measure(session, spec, batch, args.duration)
                )
        for clients in args.clients:
            runs.setdefault(f"grpc-{clients}", []).append(
                grpc_load(target, args.model, clients, args.duration, args.warmup)
            )
            runs.setdefault(f"rest-{clients}", []).append(
                run_wrk(url, args.model, 1, clients, args.duration, args.warmup)
            )
            if args.streams:  # each client its own SampleMany call, one request at a time
                runs.setdefault(f"grpcmany-{clients}", []).append(
                    grpc_load(target, args.model, clients, args.duration, args.warmup, clients)
                )
        print(f"# repeat {repeat + 1}/{args.repeats} done", flush=True)
    return {name: median_of(results) for name, results in runs.items()}


def report(results: dict[str, dict]) -> str:
    """A table; ratios are against the best raw batch-32 figure (the ceiling)."""
    raw = {name: r for name, r in results.items() if name.startswith("raw-b32")}
    best = max(raw, key=lambda name: raw[name]["images_per_s"])
    ceiling = raw[best]["images_per_s"]
    lines = [
        f"{'config':<14}{'images/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'vs raw b32':>11}"
        f"{'errors':>8}  client (runs: images/s)"
    ]
    for name, r in results.items():
        lines.append(
            f"{name:<14}{r['images_per_s']:>10.1f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
            f"{r['images_per_s'] / ceiling:>10.3f}x{r['errors']:>8.0f}  {r['client']} {r['runs']}"
        )
    lines.append(f"# ceiling {best}: {raw[best]['ms_per_image']:.2f} ms of compute per image")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", type=Path, default=Path("models"))
    parser.add_argument("--model", default="vae-mnist")
    parser.add_argument("--url", help="REST base URL of a running server (default: start one)")
    parser.add_argument("--grpc", help="gRPC host:port of that running server")
    parser.add_argument("--clients", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--raw-threads",
        type=int,
        nargs="+",
        default=[1, 0],
        help="ORT intra-op threads of the raw runs, each measured (0: ORT's default)",
    )
    parser.add_argument(
        "--json", type=Path, help="also write the medians here, and their plot beside (.png)"
    )
    parser.add_argument("--server-arg", action="append", default=[], help="extra serve flag")
    parser.add_argument(
        "--streams",
        action="store_true",
        help="also grpcmany-C rows: each of C clients sends its requests over one SampleMany call",
    )
    args = parser.parse_args()
    if bool(args.url) != bool(args.grpc):
        parser.error("--url and --grpc go together (or neither, to start a server)")

    started = time.perf_counter()
    if args.url:
        results = benchmark(args, args.url, args.grpc)
    else:
        with LocalServer(args.repository, args.server_arg) as server:
            print(f"# server log: {server.log_path}", flush=True)
            results = benchmark(args, server.http_url, server.grpc_target)
    print(report(results))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"# {os.cpu_count()} CPUs, load average {load}, {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"# plot: {plot_beside(args.json, plot_load)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
