"""The diffusion benchmark's measurements against one running server, each bracketed by
two ``/metrics`` snapshots so the server's own counters give that section's figures.
(The in-process ceiling is ``raw_diffusion``.)
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

import numpy as np
import prom
from diffusion_load import Events, Load, Workload, channel, closed_loop, poisson, start_jobs

STEPS = "latentserve_job_steps_total"
ITERATIONS = "latentserve_step_iterations_total"
ROWS = "latentserve_batch_items"
TTFS = "latentserve_time_to_first_step_seconds"
COMPUTE = "latentserve_batch_compute_seconds"


@dataclass(frozen=True)
class Target:
    """One running server and the model under test."""

    grpc: str
    http: str
    workload: Workload
    label: str  # the metrics' model label, "name@version"
    max_steps: int  # the most steps a job of this model may ask for
    timeout: float


def loadavg() -> float:
    """1-minute load average: shows how busy the shared machine was around a section."""
    return round(os.getloadavg()[0], 2)


async def snapshot(target: Target) -> prom.Snapshot:
    return await asyncio.to_thread(prom.scrape, target.http)


def server_window(before: prom.Snapshot, after: prom.Snapshot, label: str, seconds: float) -> dict:
    """Denoiser job-steps/s, jobs per iteration, rows per graph call and the mean time of
    one graph call inside the server (what the raw calls compare with) in a window."""
    steps = prom.delta(before, after, STEPS, model=label)
    iterations = prom.delta(before, after, ITERATIONS, model=label)
    rows = prom.delta(before, after, f"{ROWS}_sum", model=label, graph="denoiser")
    calls = prom.delta(before, after, f"{ROWS}_count", model=label, graph="denoiser")
    compute = prom.delta(before, after, f"{COMPUTE}_sum", model=label, graph="denoiser")
    return {
        "ms_per_denoiser_call": compute / calls * 1000.0 if calls else 0.0,
        "job_steps_per_s": steps / seconds,
        "iterations_per_s": iterations / seconds,
        "mean_jobs_per_iteration": steps / iterations if iterations else 0.0,
        "mean_rows_per_denoiser_call": rows / calls if calls else 0.0,
        "job_steps": steps,
    }


def client_figures(load: Load) -> dict:
    """Completed images/s over the run (first send to last answer) and latency quantiles."""
    done = [o for o in load.outcomes if o.finished is not None]
    ms = np.asarray([o.finished - o.sent for o in done]) * 1000.0
    last = max((o.finished for o in done), default=load.ended)
    return {
        "requests": len(load.outcomes),
        "completed": len(done),
        "errors": len(load.outcomes) - len(done),
        "images_per_s": len(done) / max(last - load.started, 1e-9),
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else float("nan"),
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else float("nan"),
    }


async def capacity(target: Target, callers: int, duration: float, seed: int) -> dict:
    """Closed-loop throughput with ``callers`` clients: the mode's capacity at that load."""
    before, load_start = await snapshot(target), loadavg()
    load = await closed_loop(target.grpc, target.workload, callers, duration, seed, target.timeout)
    after = await snapshot(target)
    seconds = load.ended - load.started
    return {
        "callers": callers,
        **client_figures(load),
        **server_window(before, after, target.label, seconds),
        "loadavg": [load_start, loadavg()],
    }


async def poisson_rate(target: Target, rate: float, arrivals: list) -> dict:
    """One open-loop run at ``rate`` requests/s, until every request is answered."""
    before, load_start = await snapshot(target), loadavg()
    load = await poisson(target.grpc, target.workload, arrivals, target.timeout)
    after = await snapshot(target)
    figures = client_figures(load)
    seconds = load.ended - load.started
    return {
        "rate": rate,
        "offered_per_s": len(arrivals) / max(arrivals[-1].at, 1e-9) if arrivals else 0.0,
        **figures,
        **server_window(before, after, target.label, seconds),
        "seconds": seconds,
        "loadavg": [load_start, loadavg()],
    }


async def wait_idle(target: Target, timeout: float = 60.0) -> None:
    """Wait until the server holds no job, so the next repeat starts from the same state."""
    deadline = time.monotonic() + timeout
    while prom.total(await snapshot(target), "latentserve_jobs_active") > 0:
        if time.monotonic() > deadline:
            raise TimeoutError("server still holds jobs after the load was cancelled")
        await asyncio.sleep(0.05)


async def time_to_first_step(
    target: Target, repeats: int, long_jobs: int, long_steps: int, offset: float, seed: int
) -> dict:
    """A short job arrives ``U(0, offset)`` s after ``long_jobs`` long ones started: how long
    until its first step, from the client's events and from the server's histogram (the
    snapshots bracket only the probe's first step, so the long jobs are not in it)."""
    rng = np.random.default_rng(seed)
    waits: list[float] = []
    buckets: list[tuple[float, float]] = []
    load_start = loadavg()
    async with channel(target.grpc) as stub:
        for k in range(repeats):
            jobs = await start_jobs(
                stub, target.workload, long_jobs, long_steps, rng, target.timeout
            )
            await asyncio.sleep(rng.uniform(0, offset))
            before = await snapshot(target)
            workload = target.workload
            req = workload.request(10, int(rng.integers(workload.choices)), 10_000 + k)
            probe = Events(stub, workload, req, target.timeout)
            await asyncio.wait_for(probe.first_step.wait(), target.timeout)
            after = await snapshot(target)
            if probe.first_step_at is None:
                raise RuntimeError("the probe job ended without a step")
            waits.append(probe.first_step_at - probe.sent)
            buckets = _add(buckets, prom.bucket_deltas(before, after, TTFS, model=target.label))
            await asyncio.gather(*(j.cancel() for j in (*jobs, probe)))
            await wait_idle(target)
    ms = np.asarray(waits) * 1000.0
    return {
        "repeats": repeats,
        "long_jobs": long_jobs,
        "long_steps": long_steps,
        "client_p50_ms": float(np.percentile(ms, 50)),
        "client_p99_ms": float(np.percentile(ms, 99)),
        "client_ms": [round(x, 1) for x in ms.tolist()],
        "server_p50_ms": prom.quantile(0.5, buckets) * 1000.0,
        "server_p99_ms": prom.quantile(0.99, buckets) * 1000.0,
        "server_observations": buckets[-1][1] if buckets else 0,
        "loadavg": [load_start, loadavg()],
    }


def _add(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if not a:
        return b
    return [(bound, x + y) for (bound, x), (_, y) in zip(a, b, strict=True)]


async def steps_window(target: Target, jobs: int, steps: int, window: float, seed: int) -> dict:
    """Server job-steps/s while exactly ``jobs`` long jobs run (checked on both snapshots)."""
    rng = np.random.default_rng(seed)
    steps = min(steps, target.max_steps)
    async with channel(target.grpc) as stub:
        running = await start_jobs(stub, target.workload, jobs, steps, rng, target.timeout)
        load_start = loadavg()
        before, t0 = await snapshot(target), time.perf_counter()
        await asyncio.sleep(window)
        after, t1 = await snapshot(target), time.perf_counter()
        finished = sum(j.done_at is not None for j in running)
        await asyncio.gather(*(j.cancel() for j in running))
        await wait_idle(target)
    gauge = "latentserve_jobs_running"
    counts = [prom.total(s, gauge, model=target.label) for s in (before, after)]
    if finished or counts != [jobs, jobs]:
        raise RuntimeError(f"steps window not steady: running {counts}, {finished} finished")
    return {
        "jobs": jobs,
        "window_s": t1 - t0,
        **server_window(before, after, target.label, t1 - t0),
        "loadavg": [load_start, loadavg()],
    }
