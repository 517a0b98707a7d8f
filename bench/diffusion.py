"""Benchmark: iteration-level vs request-level step batching for diffusion jobs.

Two real servers in the same run, same model and settings except ``step_batching``,
loaded one at a time, alternating section by section. The jobs are ``Sample(n=1,
sampler=ddim)`` with a random class (``--method sample``) or ``TextToImage`` with a random
prompt (``--method text-to-image``), guided at the model's default scale:

1. open-loop Poisson arrivals (steps in {10, 25, 50}) at rates around the request-level
   mode's closed-loop capacity (measured first, unless ``--rates`` are given), with
   identical seeded schedules for both modes;
2. time to the first step of a job that arrives while 8 long jobs run;
3. (iteration mode) server job-steps/s with 8 running jobs vs the same denoiser graph
   called in this process with the same rows and intra-op threads, window by window;
4. (iteration mode, text-to-image) a 25-step job alone and 8 at once: latency split into
   text encoding, denoising and decoding, vs the same graph calls made by hand.

    python bench/diffusion.py --repository runs/bench-repository --model ddpm-mnist
    python bench/diffusion.py --repository runs/bench-repository --model ldm-mnist \
        --method text-to-image
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory

import grpc
import numpy as np
from diffusion_load import METHODS, TEXT_TO_IMAGE, Workload, schedule
from diffusion_report import markdown
from diffusion_sections import Target, capacity, poisson_rate, steps_window, time_to_first_step
from diffusion_stages import stage_latency
from latentserve.clients.local import LocalServer
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc
from plots import plot_beside, plot_diffusion
from raw_diffusion import RawJobs, raw_denoiser

from latentserve.manifest import Manifest

MODES = ("request", "iteration")


def settings_toml(args: argparse.Namespace, mode: str) -> str:
    """The server settings of one run (the README explains each choice)."""
    return "\n".join(
        [
            "# written by bench/diffusion.py; only step_batching differs between the runs",
            f'step_batching = "{mode}"',
            f"intra_op_threads = {args.threads}",
            f"max_running_jobs = {args.max_running_jobs}  # jobs stepping together at most",
            "max_jobs = 4096            # admission never refuses a benchmark job",
            "job_timeout_s = 600",
            "max_finished_jobs = 64     # results are streamed back; keep few in memory",
            f"[models.{args.model}]",
            f"max_batch_size = {args.max_batch_size}  # rows per denoiser graph run",
            f"max_concurrent_batches = {args.concurrent_batches}",
            "max_queue_size = 1024",
            "",
        ]
    )


def model_target(server: LocalServer, args: argparse.Namespace) -> Target:
    """Resolve the model on the server and read from the manifest it serves what its jobs
    may ask (classes, or that it takes prompts)."""
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.GenerativeServiceStub(channel)
        info = stub.GetModel(pb.GetModelRequest(model=args.model))
    manifest = Manifest.load(args.repository / info.name / info.version)
    if args.method == TEXT_TO_IMAGE:
        if "text_to_image" not in manifest.capabilities:
            raise SystemExit(f"{args.model}: does not do text-to-image")
        workload = Workload(args.model, args.method, prompts=tuple(args.prompts or prompts()))
    else:
        if manifest.pipeline != "diffusion" or manifest.conditioning is None:
            raise SystemExit(f"{args.model}: needs a class-conditional diffusion model")
        workload = Workload(args.model, args.method, num_classes=manifest.conditioning.num_classes)
    assert manifest.noise_schedule is not None
    return Target(
        grpc=server.grpc_target,
        http=server.http_url,
        workload=workload,
        label=f"{info.name}@{info.version}",
        max_steps=min(manifest.noise_schedule.num_train_timesteps, 1000),  # 1000: max_steps default
        timeout=args.timeout,
    )


def prompts() -> list[str]:
    """Every digit in every training phrasing of ``mnist-captions`` (60 prompts)."""
    from latentserve.training.captions import TRAIN_TEMPLATES, digit_caption

    return [digit_caption(d, t) for t in TRAIN_TEMPLATES for d in range(10)]


def report(mode: str, row: dict) -> None:
    print(
        f"  [{mode:>9}] rate {row['rate']:6.2f}/s: {row['completed']}/{row['requests']} done, "
        f"{row['images_per_s']:.2f} images/s, p50 {row['p50_ms']:.0f} ms, "
        f"p99 {row['p99_ms']:.0f} ms, {row['job_steps_per_s']:.0f} job-steps/s",
        flush=True,
    )


async def measure(args: argparse.Namespace, targets: dict[str, Target]) -> dict:
    """Every section, alternating the two servers section by section (rate by rate), so
    that other work starting or stopping on a shared machine hits both modes alike; the
    idle server meanwhile computes nothing."""
    out: dict = {mode: {"rates": []} for mode in MODES}
    for mode in MODES:
        cap = await capacity(
            targets[mode], args.capacity_clients, args.capacity_duration, args.seed
        )
        out[mode]["capacity"] = cap
        print(f"  [{mode:>9}] capacity: {cap['images_per_s']:.2f} images/s", flush=True)
    factors = args.rate_factors
    rates = args.rates or [
        round(f * out["request"]["capacity"]["images_per_s"], 2) for f in factors
    ]
    choices = targets["request"].workload.choices
    for i, rate in enumerate(rates):
        arrivals = schedule(rate, args.duration, choices, args.seed + i, args.max_requests)
        for mode in MODES:
            out[mode]["rates"].append(await poisson_rate(targets[mode], rate, arrivals))
            report(mode, out[mode]["rates"][-1])
    for mode in MODES:
        out[mode]["ttfs"] = ttfs = await time_to_first_step(
            targets[mode], args.ttfs_repeats, args.long_jobs, args.long_steps,
            args.probe_offset, args.seed,
        )  # fmt: skip
        print(f"  [{mode:>9}] time to first step p50 {ttfs['client_p50_ms']:.0f} ms", flush=True)
    out["iteration"].update(await steps_vs_raw(args, targets["iteration"]))
    if args.method == TEXT_TO_IMAGE:
        out["iteration"]["stages"] = await stages_vs_raw(args, targets["iteration"])
    return out


async def steps_vs_raw(args: argparse.Namespace, target: Target) -> dict:
    """Server job-steps/s with ``--long-jobs`` running, then the raw denoiser at the same
    rows as one call and split as the server's batcher splits them, window by window."""
    version_dir = args.repository / target.label.replace("@", "/")
    windows: list[dict] = []
    for k in range(args.window_repeats):
        server = await steps_window(
            target, args.long_jobs, args.window_steps, args.window, args.seed + k
        )
        raw = [
            await asyncio.to_thread(
                raw_denoiser, version_dir, args.threads, args.long_jobs, True, args.window,
                args.seed, slots,
            )
            for slots in (1, args.concurrent_batches)
        ]  # fmt: skip
        windows.append({"steps": server, "raw": raw[0], "raw_split": raw[1]})
        print(
            f"  [iteration] {server['job_steps_per_s']:.0f} job-steps/s with "
            f"{args.long_jobs} jobs; raw {raw[0]['job_steps_per_s']:.0f} (one call), "
            f"{raw[1]['job_steps_per_s']:.0f} (split over {args.concurrent_batches})",
            flush=True,
        )
    per = {
        key: sorted((w[key] for w in windows), key=lambda r: r["job_steps_per_s"])
        for key in ("steps", "raw", "raw_split")
    }
    ratios = {
        f"server_over_{key}": float(
            np.median([w["steps"]["job_steps_per_s"] / w[key]["job_steps_per_s"] for w in windows])
        )
        for key in ("raw", "raw_split")
    }
    middle = (len(windows) - 1) // 2
    return {key: rows[middle] for key, rows in per.items()} | {
        "steps_ratios": ratios,
        "steps_windows": windows,
    }


async def stages_vs_raw(args: argparse.Namespace, target: Target) -> list[dict]:
    """A ``--stage-steps`` job alone and ``--long-jobs`` at once, split into stages, against
    the same graph calls made in this process (same threads, rows split over the slots)."""
    version_dir = args.repository / target.label.replace("@", "/")
    numbers = itertools.count(args.seed * 100_000)
    rows = []
    for jobs in (1, args.long_jobs):
        raw = RawJobs(
            version_dir, args.threads, args.concurrent_batches, jobs, args.stage_steps, args.seed
        )
        try:
            row = await stage_latency(
                target, raw, args.stage_steps, args.stage_repeats, args.seed, numbers
            )
        finally:
            raw.close()
        print(
            f"  [iteration] {jobs} x {args.stage_steps}-step text-to-image: client "
            f"{row['client_mean_ms']:.0f} ms (text {row['text_encode_ms']:.0f}, denoise "
            f"{row['denoise_ms']:.0f}, decode {row['decode_ms']:.0f}); by hand "
            f"{row['raw_total_ms']:.0f} ms",
            flush=True,
        )
        rows.append(row)
    return rows


def serve_and_measure(args: argparse.Namespace, work: Path) -> dict:
    """Start one server per mode (same model and settings but step_batching), measure,
    stop them; then the raw ceiling, with no server left to compete for the cores."""
    with ExitStack() as stack:
        targets = {}
        for mode in MODES:
            config = work / f"settings-{mode}.toml"
            config.write_text(settings_toml(args, mode))
            log = work / f"server-{mode}.log"
            print(f"[{mode}] starting server ({config}, log {log})", flush=True)
            server = stack.enter_context(
                LocalServer(args.repository, ["--config", str(config)], log_path=log)
            )
            targets[mode] = model_target(server, args)
        results = asyncio.run(measure(args, targets))
    for mode in MODES:
        results[mode]["settings_toml"] = (work / f"settings-{mode}.toml").read_text()
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repository", type=Path, required=True)
    p.add_argument("--model", default="ddpm-mnist")
    p.add_argument("--method", choices=METHODS, default="sample")
    p.add_argument("--prompts", nargs="+", help="text-to-image prompts (default: digit captions)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of arrivals per rate")
    p.add_argument("--rates", type=float, nargs="+", help="requests/s (default: from capacity)")
    p.add_argument("--rate-factors", type=float, nargs="+", default=[0.5, 1.0, 1.5])
    p.add_argument("--max-requests", type=int, default=2000, help="cap per rate")
    p.add_argument("--capacity-clients", type=int, default=32)
    p.add_argument("--capacity-duration", type=float, default=10.0)
    p.add_argument("--ttfs-repeats", type=int, default=10)
    p.add_argument("--long-jobs", type=int, default=8)
    p.add_argument("--long-steps", type=int, default=200)
    p.add_argument("--probe-offset", type=float, default=1.0, help="max s after the long jobs")
    p.add_argument("--window", type=float, default=5.0, help="steps/s window, s")
    p.add_argument("--window-repeats", type=int, default=3, help="server / raw windows")
    p.add_argument("--window-steps", type=int, default=1000, help="steps of its long jobs")
    p.add_argument("--stage-steps", type=int, default=25, help="steps of a stage-split job")
    p.add_argument("--stage-repeats", type=int, default=10, help="rounds per stage split")
    p.add_argument("--threads", type=int, default=1, help="intra_op_threads (server and raw)")
    p.add_argument("--max-batch-size", type=int, default=16)
    p.add_argument("--max-running-jobs", type=int, default=64)
    p.add_argument("--concurrent-batches", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=300.0, help="deadline of each request, s")
    p.add_argument("--json", type=Path, help="write every figure as JSON, and a plot beside")
    p.add_argument("--workdir", type=Path, help="keep settings and server logs here")
    p.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.capacity_duration, args.ttfs_repeats = 2.0, 2.0, 2
        args.capacity_clients, args.long_steps, args.probe_offset = 8, 50, 0.1
        args.window, args.max_requests = 0.3, 100
        args.window_repeats, args.stage_repeats, args.stage_steps = 1, 2, 5
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with TemporaryDirectory(prefix="bench-diffusion-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = {
            "model": args.model,
            "method": args.method,
            "args": _jsonable(vars(args)),
            "cpu_count": os.cpu_count(),
            **serve_and_measure(args, work),
        }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"plot: {plot_beside(args.json, plot_diffusion)}")
    print(markdown(results))
    return 0


def _jsonable(values: dict) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}


if __name__ == "__main__":
    sys.exit(main())
