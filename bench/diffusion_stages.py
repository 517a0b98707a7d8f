"""Where a text-to-image job's time goes — text encoding, denoising, decoding — for a job
alone and for ``c`` jobs sent at once, against the same jobs done by hand with raw ONNX
Runtime, the two alternating repeat by repeat.

Server figures come from ``latentserve_job_stage_seconds``: each repeat is bracketed by two
``/metrics`` snapshots and refused unless exactly its ``c`` jobs were counted in each stage,
so Δsum / Δcount is the mean of exactly those jobs. Every request carries a prompt no earlier
one used (a numbered variant of a workload prompt), so each pays for its text encoding;
the empty negative prompt is encoded once and then cached, as on any server.
"""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import prom
from diffusion_load import channel, send
from diffusion_sections import Target, loadavg, snapshot
from raw_diffusion import RawJobs

STAGES = ("text_encode", "denoise", "decode")
STAGE = "latentserve_job_stage_seconds"
JOB = "latentserve_job_duration_seconds"


async def stage_latency(
    target: Target, raw: RawJobs, steps: int, repeats: int, seed: int, numbers: itertools.count
) -> dict:
    """``repeats`` rounds of ``raw.jobs`` concurrent jobs of ``steps`` steps (after one
    unmeasured warm-up round), each followed by the same jobs through ``raw``; ``numbers``
    makes every prompt of the run distinct."""
    workload, concurrency = target.workload, raw.jobs
    rng = np.random.default_rng(seed)
    client_ms: list[float] = []
    rounds: list[dict] = []
    load_start = loadavg()
    async with channel(target.grpc) as stub:
        for repeat in range(repeats + 1):
            requests = []
            for _ in range(concurrency):
                req = workload.request(steps, int(rng.integers(workload.choices)), next(numbers))
                req.prompt = f"{req.prompt} {req.seed}"
                requests.append(req)
            before = await snapshot(target)
            outcomes = await asyncio.gather(
                *(send(stub, workload, req, target.timeout) for req in requests)
            )
            after = await snapshot(target)
            failed = [o.error for o in outcomes if o.finished is None]
            if failed:
                raise RuntimeError(f"a text-to-image request failed: {failed[0]}")
            server = _server_round(before, after, target.label, concurrency)
            by_hand = await asyncio.to_thread(raw.once, [r.prompt for r in requests])
            if not repeat:
                continue  # warm-up: first calls of fresh sessions and of new batch shapes
            latencies = [(o.finished - o.sent) * 1000.0 for o in outcomes if o.finished]
            client_ms.extend(latencies)
            mean = float(np.mean(latencies))
            raw_total = sum(by_hand.values())
            rounds.append(
                {
                    **server,
                    "client_mean_ms": mean,
                    "other_ms": mean - sum(server[f"{s}_ms"] for s in STAGES),
                    **{f"raw_{stage}_ms": ms for stage, ms in by_hand.items()},
                    "raw_total_ms": raw_total,
                    "client_over_raw": mean / raw_total,
                }
            )
    keys = [k for k in rounds[0] if k.endswith("_ms") or k == "client_over_raw"]
    return {
        "concurrency": concurrency,
        "steps": steps,
        "repeats": repeats,
        "slots": raw.slots,
        "client_p50_ms": float(np.percentile(client_ms, 50)),
        "client_p99_ms": float(np.percentile(client_ms, 99)),
        **{key: float(np.median([r[key] for r in rounds])) for key in keys},
        "rounds": rounds,
        "loadavg": [load_start, loadavg()],
    }


def _server_round(before: prom.Snapshot, after: prom.Snapshot, label: str, jobs: int) -> dict:
    """Mean ms per stage of the ``jobs`` jobs that finished between the snapshots."""
    out = {}
    for stage in STAGES:
        count = prom.delta(before, after, f"{STAGE}_count", model=label, stage=stage)
        if count != jobs:
            raise RuntimeError(f"{stage}: {count:g} jobs timed, expected {jobs}")
        seconds = prom.delta(before, after, f"{STAGE}_sum", model=label, stage=stage)
        out[f"{stage}_ms"] = seconds / count * 1000.0
    job = prom.delta(before, after, f"{JOB}_sum", model=label)
    out["job_ms"] = job / prom.delta(before, after, f"{JOB}_count", model=label) * 1000.0
    return out
