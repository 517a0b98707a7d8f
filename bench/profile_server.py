"""CPU time per image, by part of the server, under the loads ``bench/run.py`` applies.

Throughput taken on a shared machine says little, but CPU time per image does: it is what
each answer costs whoever else runs. For each transport this drives the server with the
same clients as ``run.py`` (wrk for REST, the grpc.aio process for gRPC) and, over a window
inside the measured part, reads

- the server's CPU seconds per thread (the event loop, the graph batch workers, the rest)
  and the load client's, from the kernel's accounting (``psutil``);
- the images answered (jobs done) and mean batch size, from the server's ``/metrics``;
- with ``--py-spy``: a sampling profile of the thread holding the GIL (``py-spy record
  --gil``), sorted into parts by ``profile_parts.py``. Python work is serialised on the
  GIL, so this is the share of the server's one Python lane each part takes.

Every figure is the median over ``--repeats`` windows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import prom
import psutil
from latentserve.clients.local import LocalServer
from profile_parts import parse_raw, parts, thread_group
from rest_load import _LUA

HERE = Path(__file__).resolve().parent


def thread_seconds(pid: int, names: dict[int, str]) -> dict[str, float]:
    """CPU seconds so far of the process's threads, summed per ``thread_group``; ``names``
    maps thread ids to Python thread names (the kernel does not know them)."""
    totals: Counter[str] = Counter()
    for thread in psutil.Process(pid).threads():
        name = "MainThread" if thread.id == pid else names.get(thread.id, "")
        totals[thread_group(name)] += thread.user_time + thread.system_time
    return dict(totals)


def thread_names(py_spy: str | None, pid: int) -> dict[int, str]:
    """Python thread names by thread id, from a one-second profile of every thread."""
    if py_spy is None:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "threads.txt"
        command = [py_spy, "record", "--threads", "-d", "1", "-p", str(pid), "-f", "raw"]
        subprocess.run([*command, "-o", str(out)], capture_output=True, check=True)
        return {
            int(thread.split("(")[1].split(")")[0]): thread.split(": ", 1)[1]
            for thread, _frames, _count in parse_raw(out.read_text().splitlines())
            if thread
        }


def process_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def start_load(
    transport: str, http_url: str, grpc_target: str, model: str, clients: int, seconds: float
) -> tuple[subprocess.Popen, tempfile.TemporaryDirectory]:
    """The load client as its own process, running ``seconds`` in all."""
    tmp = tempfile.TemporaryDirectory()
    if transport == "rest":
        script = Path(tmp.name) / "sample.lua"
        script.write_text(_LUA.format(body=json.dumps({"n": 1})))
        url = f"{http_url}/v1/models/{model}/sample"
        command = ["wrk", "-t1", f"-c{clients}", f"-d{round(seconds)}s", "-s", str(script), url]
    else:
        command = [
            sys.executable, str(HERE / "grpc_load.py"), "--target", grpc_target,
            "--model", model, "--concurrency", str(clients), "--warmup", "0",
            "--duration", str(seconds),
        ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return process, tmp


def window(args: argparse.Namespace, pid: int, transport: str, urls: tuple[str, str]) -> dict:
    """One measured window of one transport's load."""
    load, tmp = start_load(
        transport, *urls, args.model, args.clients, args.warmup + args.duration + 3
    )
    try:
        time.sleep(args.warmup)
        if load.poll() is not None:
            raise RuntimeError(f"load client exited: {load.stderr.read().decode()[-2000:]}")
        client = psutil.Process(load.pid)
        names = thread_names(args.py_spy, pid)
        metrics_before = prom.scrape(urls[0])
        threads_before, client_before = thread_seconds(pid, names), _tree_seconds(client)
        process_before, began = process_seconds(pid), time.perf_counter()
        raw = _record(args, pid) if args.py_spy else None
        if raw is None:
            time.sleep(args.duration)
        elapsed = time.perf_counter() - began
        threads_after, client_after = thread_seconds(pid, names), _tree_seconds(client)
        process_after = process_seconds(pid)
        metrics_after = prom.scrape(urls[0])
    finally:
        load.wait()
        tmp.cleanup()
    images = prom.delta(metrics_before, metrics_after, "latentserve_jobs_total", state="done")
    batches = prom.delta(metrics_before, metrics_after, "latentserve_batch_items_count")
    items = prom.delta(metrics_before, metrics_after, "latentserve_batch_items_sum")
    per_image = 1000.0 / max(images, 1)
    result = {
        "images": images,
        "images_per_s": images / elapsed,
        "mean_batch": items / batches if batches else 0.0,
        "server_ms_per_image": (process_after - process_before) * per_image,
        "client_ms_per_image": (client_after - client_before) * per_image,
        "threads_ms_per_image": {
            group: (threads_after.get(group, 0.0) - threads_before.get(group, 0.0)) * per_image
            for group in ("loop", "graph", "other")
        },
    }
    if raw is not None:
        counts = parts(raw.splitlines())
        held = sum(counts.values())
        result["gil_busy"] = held / (args.rate * elapsed)
        result["gil_ms_per_image"] = {
            part: n / args.rate * per_image for part, n in counts.most_common()
        }
        result["gil_share"] = {part: n / held for part, n in counts.most_common()}
    return result


def _tree_seconds(process: psutil.Process) -> float:
    """CPU seconds of a process and its children (wrk has none; a Python client may)."""
    total = 0.0
    for each in (process, *process.children(recursive=True)):
        try:
            times = each.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _record(args: argparse.Namespace, pid: int) -> str:
    """py-spy's raw stacks of the GIL-holding thread over ``duration`` seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "profile.txt"
        command = [
            args.py_spy, "record", "--gil", "--threads", "-r", str(args.rate),
            "-d", str(max(1, round(args.duration))), "-p", str(pid), "-f", "raw",
            "-o", str(out),
        ]  # fmt: skip
        subprocess.run(command, capture_output=True, check=True)
        text = out.read_text()
        if args.keep_profiles:
            args.keep_profiles.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%H%M%S")
            (args.keep_profiles / f"{args.model}-{stamp}-{os.getpid()}.txt").write_text(text)
        return text


def default_py_spy() -> str:
    """py-spy installed next to this Python (the dev extra), else the one on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy") or "py-spy"


def median_windows(windows: list[dict]) -> dict:
    """Median of every figure (nested per-part figures too) over the repeats."""
    merged: dict = {}
    for key, value in windows[0].items():
        if isinstance(value, dict):
            names = {name for w in windows for name in w[key]}
            merged[key] = {
                name: statistics.median(w[key].get(name, 0.0) for w in windows) for name in names
            }
        else:
            merged[key] = statistics.median(w[key] for w in windows)
    return merged


def report(results: dict[str, dict]) -> str:
    """A table per transport: CPU per image by thread, then GIL time per image by part."""
    lines = []
    for transport, r in results.items():
        threads = r["threads_ms_per_image"]
        lines += [
            f"## {transport}: {r['images_per_s']:.0f} images/s (indicative only), "
            f"mean batch {r['mean_batch']:.1f}",
            f"server CPU {r['server_ms_per_image']:.3f} ms/image = loop thread "
            f"{threads['loop']:.3f} + graph workers {threads['graph']:.3f} + other threads "
            f"{threads['other']:.3f}; load client {r['client_ms_per_image']:.3f} ms/image",
        ]
        if "gil_share" in r:
            lines.append(f"GIL held {r['gil_busy']:.0%} of the window; by part:")
            ordered = sorted(r["gil_share"], key=r["gil_share"].get, reverse=True)
            for part in ordered:
                lines.append(
                    f"  {part:<34}{r['gil_share'][part]:>7.1%}"
                    f"{r['gil_ms_per_image'][part]:>9.3f} ms/image"
                )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", type=Path, default=Path("models"))
    parser.add_argument("--model", default="vae-mnist")
    parser.add_argument(
        "--transports", nargs="+", choices=("rest", "grpc"), default=["rest", "grpc"]
    )
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per window")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--py-spy",
        nargs="?",
        const=default_py_spy(),
        help="profile with py-spy (this binary; default: the environment's own)",
    )
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--keep-profiles", type=Path, help="also keep py-spy's raw stacks here")
    parser.add_argument("--json", type=Path, help="also write the medians here")
    parser.add_argument("--server-arg", action="append", default=[], help="extra serve flag")
    args = parser.parse_args()
    if args.transports and "rest" in args.transports and shutil.which("wrk") is None:
        parser.error("wrk not found: apt-get install wrk (or run `make load-tools`)")

    load_before = os.getloadavg()
    with LocalServer(args.repository, args.server_arg) as server:
        urls = (server.http_url, server.grpc_target)
        results = {}
        for transport in args.transports:
            runs = [window(args, server.pid, transport, urls) for _ in range(args.repeats)]
            results[f"{transport}-{args.clients}"] = median_windows(runs)
    print(report(results))
    loads = ", ".join(f"{x:.2f}" for x in (*load_before, *os.getloadavg()))
    print(f"# {os.cpu_count()} CPUs; load average before (1, 5, 15 min) and after: {loads}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
