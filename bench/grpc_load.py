"""Closed-loop gRPC load generator: C concurrent callers asking ``Sample(n)`` back to back.

With ``--streams S`` the C callers share S ``SampleMany`` calls instead of making one unary
call each per request: each stream keeps C / S requests outstanding, sending the next as
soon as an answer arrives.

It runs as its own process (one asyncio loop, grpc.aio) so that its CPU use is visible and
separate from the server's; it prints one JSON line with throughput and latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import grpc
import numpy as np
from latentserve.clients.errors import status_code
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc


async def _caller(
    stub: pb_grpc.GenerativeServiceStub,
    request: pb.SampleRequest,
    start_at: float,
    stop_at: float,
    latencies: list[float],
    errors: list[str],
) -> None:
    while (sent := time.perf_counter()) < stop_at:
        try:
            await stub.Sample(request, timeout=30)
        except grpc.aio.AioRpcError as exc:
            errors.append(exc.code().name)
            continue
        if sent >= start_at:
            latencies.append(time.perf_counter() - sent)


async def _stream(
    stub: pb_grpc.GenerativeServiceStub,
    request: pb.SampleRequest,
    window: int,
    start_at: float,
    stop_at: float,
    latencies: list[float],
    errors: list[str],
) -> None:
    """One SampleMany call with ``window`` requests outstanding until ``stop_at``."""
    sent: dict[int, float] = {}
    answered: asyncio.Queue[None] = asyncio.Queue()
    for _ in range(window):
        answered.put_nowait(None)

    async def requests():  # noqa: ANN202 - an async generator of requests
        next_id = 0
        while True:
            await answered.get()
            if time.perf_counter() >= stop_at:
                return
            sent[next_id] = time.perf_counter()
            yield pb.SampleManyRequest(id=next_id, request=request)
            next_id += 1

    async for answer in stub.SampleMany(requests(), timeout=duration_cap(stop_at)):
        t0 = sent.pop(answer.id)
        if answer.HasField("error"):
            errors.append(status_code(answer.error.code).name)
        elif t0 >= start_at:
            latencies.append(time.perf_counter() - t0)
        answered.put_nowait(None)


def duration_cap(stop_at: float) -> float:
    """A stream's deadline: its load time plus the 30 s a unary call may take."""
    return stop_at - time.perf_counter() + 30.0


async def run_load(
    target: str,
    model: str,
    n: int,
    concurrency: int,
    duration: float,
    warmup: float,
    streams: int = 0,
) -> dict:
    """Drive the server for ``warmup + duration`` seconds; measure only the last ``duration``.
    ``streams`` > 0: the callers share that many SampleMany calls."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GenerativeServiceStub(channel)
        request = pb.SampleRequest(model=model, n=n)
        await stub.Sample(request, timeout=30)  # connect and fail fast on a bad model
        latencies: list[float] = []
        errors: list[str] = []
        start_at = time.perf_counter() + warmup
        stop_at = start_at + duration
        if streams:
            windows = [len(part) for part in np.array_split(np.arange(concurrency), streams)]
            calls = [
                _stream(stub, request, w, start_at, stop_at, latencies, errors) for w in windows
            ]
            client = f"grpc.aio (python, 1 process), {streams} SampleMany streams"
        else:
            calls = [
                _caller(stub, request, start_at, stop_at, latencies, errors)
                for _ in range(concurrency)
            ]
            client = "grpc.aio (python, 1 process)"
        await asyncio.gather(*calls)
        elapsed = time.perf_counter() - start_at
    return summarize(latencies, errors, elapsed, n, client=client)


def summarize(
    latencies: list[float], errors: list[str], elapsed: float, n: int, client: str
) -> dict:
    """Throughput and latency percentiles of one load run."""
    ms = np.asarray(latencies) * 1000.0
    return {
        "client": client,
        "requests": len(latencies),
        "errors": len(errors),
        "images_per_s": len(latencies) * n / elapsed,
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else float("nan"),
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True, help="host:port of the gRPC server")
    parser.add_argument("--model", required=True)
    parser.add_argument("-n", type=int, default=1, help="images per request")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument(
        "--streams", type=int, default=0, help="share this many SampleMany calls (0: unary)"
    )
    args = parser.parse_args()
    result = asyncio.run(
        run_load(
            args.target,
            args.model,
            args.n,
            args.concurrency,
            args.duration,
            args.warmup,
            args.streams,
        )
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
