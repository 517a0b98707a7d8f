"""Mixed REST + gRPC soak against a real server: its resident memory over time and every
answer by outcome.

Each worker loops over the mix below (sample, log-prob, reconstruct over REST; sample,
encode, log-prob, streamed sample and four samples over one SampleMany call over gRPC)
until told to stop, while the server's RSS is read once a second. The suite runs a short
soak (tests/server/test_soak.py); this script runs a long one and prints one JSON line:

    python bench/soak.py --repository models --model vae-mnist --duration 600
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import io
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import numpy as np
import psutil
from latentserve.clients.errors import status_code, status_lost_to_a_write
from latentserve.clients.local import LocalServer
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc
from PIL import Image


@dataclass
class SoakReport:
    outcomes: collections.Counter = field(default_factory=collections.Counter)
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MB)

    def growth_mb(self, warmup_s: float) -> float:
        """RSS at the end less RSS once warmed up (medians of a few readings each, so one
        reading taken mid-batch does not decide it)."""
        after = [mb for t, mb in self.rss_mb if t >= warmup_s]
        if len(after) < 4:
            raise ValueError(f"too few RSS readings after {warmup_s}s: {len(after)}")
        window = max(2, len(after) // 10)
        return statistics.median(after[-window:]) - statistics.median(after[:window])

    def summary(self, warmup_s: float) -> dict:
        return {
            "outcomes": dict(sorted(self.outcomes.items())),
            "rss_start_mb": round(self.rss_mb[0][1], 1),
            "rss_peak_mb": round(max(mb for _, mb in self.rss_mb), 1),
            "rss_end_mb": round(self.rss_mb[-1][1], 1),
            "rss_growth_after_warmup_mb": round(self.growth_mb(warmup_s), 1),
            "warmup_s": warmup_s,
            "seconds": round(self.rss_mb[-1][0], 1),
        }


def digit_pngs(count: int, side: int = 28, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


async def _worker(
    http_url: str,
    stub: pb_grpc.GenerativeServiceStub,
    model: str,
    pngs: list[bytes],
    stop: asyncio.Event,
    outcomes: collections.Counter,
) -> None:
    images = [base64.b64encode(p).decode() for p in pngs]
    async with httpx.AsyncClient(base_url=http_url, timeout=60) as http:
        while not stop.is_set():
            base = f"/v1/models/{model}"
            for call in (
                http.post(f"{base}/sample", json={"n": 4}),
                http.post(f"{base}/log-prob", json={"images": images, "samples": 8}),
                http.post(f"{base}/reconstruct", json={"images": images}),
            ):
                outcomes[await _rest_outcome(call)] += 1
            for call in (
                stub.Sample(pb.SampleRequest(model=model, n=4), timeout=60),
                stub.Encode(pb.EncodeRequest(model=model, images=pngs), timeout=60),
                stub.LogProb(pb.LogProbRequest(model=model, images=pngs, samples=8), timeout=60),
            ):
                outcomes[await _grpc_outcome(call)] += 1
            outcomes[await _grpc_stream_outcome(stub, model)] += 1
            outcomes.update(await _grpc_many_outcomes(stub, model))


async def _rest_outcome(call: object) -> str:
    try:
        response = await call  # type: ignore[misc]
    except httpx.HTTPError as error:
        return f"rest:{type(error).__name__}"
    return f"rest:{response.status_code}"


async def _grpc_outcome(call: object) -> str:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return f"grpc:{error.code().name}"
    return "grpc:OK"


async def _grpc_stream_outcome(stub: pb_grpc.GenerativeServiceStub, model: str) -> str:
    try:
        async for _ in stub.StreamSample(pb.SampleRequest(model=model, n=6), timeout=60):
            pass
    except grpc.aio.AioRpcError as error:
        return f"grpc:{error.code().name}"
    return "grpc:OK"


async def _grpc_many_outcomes(stub: pb_grpc.GenerativeServiceStub, model: str) -> list[str]:
    """Four sample requests over one SampleMany call: an outcome per answer, and the
    call's own status if it ended in error."""
    requests = [pb.SampleManyRequest(id=i, request=pb.SampleRequest(model=model)) for i in range(4)]
    outcomes = []
    try:
        async for answer in stub.SampleMany(iter(requests), timeout=60):
            code = grpc.StatusCode.OK
            if answer.WhichOneof("result") == "error":
                code = status_code(answer.error.code)
            outcomes.append(f"grpc:{code.name}")
    except grpc.aio.AioRpcError as error:
        if outcomes[-1:] == ["grpc:UNAVAILABLE"] and status_lost_to_a_write(error):
            outcomes.append("grpc:UNAVAILABLE")  # a draining server's refusal, then its end
        else:
            outcomes.append(f"grpc:{error.code().name}")
    return outcomes


async def _read_rss(pid: int, report: SoakReport, stop: asyncio.Event, every_s: float) -> None:
    process = psutil.Process(pid)
    started = time.monotonic()
    while True:
        try:
            rss = process.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            return
        report.rss_mb.append((time.monotonic() - started, rss))
        try:
            await asyncio.wait_for(stop.wait(), every_s)
            return
        except TimeoutError:
            pass


async def drive(
    http_url: str,
    grpc_target: str,
    model: str,
    stop: asyncio.Event,
    *,
    concurrency: int = 4,
    pid: int | None = None,
    report: SoakReport | None = None,
    rss_every_s: float = 1.0,
) -> SoakReport:
    """Run ``concurrency`` mixed workers until ``stop`` is set; return what they saw."""
    report = report or SoakReport()
    pngs = digit_pngs(2)
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        stub = pb_grpc.GenerativeServiceStub(channel)
        tasks = [
            asyncio.ensure_future(_worker(http_url, stub, model, pngs, stop, report.outcomes))
            for _ in range(concurrency)
        ]
        if pid is not None:
            tasks.append(asyncio.ensure_future(_read_rss(pid, report, stop, rss_every_s)))
        await asyncio.gather(*tasks)
    return report


async def soak_for(
    server: LocalServer, pid: int, model: str, seconds: float, concurrency: int
) -> SoakReport:
    """Drive a running server (process ``pid``) for ``seconds``."""
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    return await drive(
        server.http_url, server.grpc_target, model, stop, concurrency=concurrency, pid=pid
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=Path("models"))
    parser.add_argument("--model", default="vae-mnist")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before growth counts")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with LocalServer(args.repository, env={"OMP_NUM_THREADS": "1"}) as server:
        assert server._process is not None
        soak = soak_for(server, server._process.pid, args.model, args.duration, args.concurrency)
        report = asyncio.run(soak)
    print(
        json.dumps(
            {"model": args.model, "concurrency": args.concurrency, **report.summary(args.warmup)}
        )
    )


if __name__ == "__main__":
    main()
