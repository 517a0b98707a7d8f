"""gRPC load shapes for the diffusion benchmark (grpc.aio, 127.0.0.1 only, always bounded).

- ``poisson``: open-loop arrivals from a seeded schedule; a request is sent at its time
  whether or not earlier ones are done, as real users would.
- ``closed_loop``: C callers back to back, to find a mode's capacity.
- ``time_to_first_step`` and ``steps_window``: long jobs kept running while a probe job
  arrives, or while the server's step counters are read over a window.

Every request has a deadline and every load a fixed count or duration, so a stuck server
ends a run with errors instead of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import numpy as np
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc

STEP_CHOICES = (10, 25, 50)


@dataclass(frozen=True)
class Arrival:
    """One scheduled request: when (seconds after the start) and what it asks."""

    at: float
    steps: int
    class_label: int
    seed: int


@dataclass
class Outcome:
    sent: float
    finished: float | None = None
    error: str | None = None
    steps: int = 0


@dataclass
class Load:
    """What a load run observed on the client side."""

    outcomes: list[Outcome] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0


def schedule(
    rate: float, duration: float, num_classes: int, seed: int, max_requests: int
) -> list[Arrival]:
    """Poisson arrivals at ``rate``/s for ``duration`` s (at most ``max_requests``); the same
    seed gives the same schedule, so both batching modes meet identical traffic."""
    rng = np.random.default_rng(seed)
    arrivals, at = [], 0.0
    while len(arrivals) < max_requests:
        at += rng.exponential(1.0 / rate)
        if at > duration:
            break
        steps = int(rng.choice(STEP_CHOICES))
        arrivals.append(
            Arrival(at, steps, int(rng.integers(num_classes)), seed * 100_000 + len(arrivals))
        )
    return arrivals


def request(model: str, steps: int, class_label: int, seed: int) -> pb.SampleRequest:
    return pb.SampleRequest(
        model=model, n=1, seed=seed, steps=steps, sampler="ddim", class_label=class_label
    )


@contextlib.asynccontextmanager
async def channel(target: str) -> AsyncIterator[pb_grpc.GenerativeServiceStub]:
    if not target.startswith("127.0.0.1:"):
        raise ValueError(f"the benchmark only loads 127.0.0.1, not {target}")
    async with grpc.aio.insecure_channel(target) as chan:
        yield pb_grpc.GenerativeServiceStub(chan)


async def _send(
    stub: pb_grpc.GenerativeServiceStub, req: pb.SampleRequest, timeout: float
) -> Outcome:
    outcome = Outcome(sent=time.perf_counter(), steps=req.steps)
    try:
        await stub.Sample(req, timeout=timeout)
        outcome.finished = time.perf_counter()
    except grpc.aio.AioRpcError as exc:
        outcome.error = exc.code().name
    return outcome


async def poisson(target: str, model: str, arrivals: list[Arrival], timeout: float) -> Load:
    """Send each arrival at its time (open loop) and wait for every answer or deadline."""
    async with channel(target) as stub:
        load = Load(started=time.perf_counter())

        async def one(arrival: Arrival) -> Outcome:
            await asyncio.sleep(max(0.0, load.started + arrival.at - time.perf_counter()))
            req = request(model, arrival.steps, arrival.class_label, arrival.seed)
            return await _send(stub, req, timeout)

        load.outcomes = list(await asyncio.gather(*(one(a) for a in arrivals)))
        load.ended = time.perf_counter()
    return load


async def closed_loop(
    target: str,
    model: str,
    callers: int,
    duration: float,
    num_classes: int,
    seed: int,
    timeout: float,
) -> Load:
    """``callers`` clients each sending its next request when its last is answered; the
    load counts requests sent within ``duration`` s (the last ones finish after it)."""
    rng = np.random.default_rng(seed)
    async with channel(target) as stub:
        load = Load(started=time.perf_counter())
        stop_at = load.started + duration

        async def caller() -> None:
            while time.perf_counter() < stop_at:
                steps = int(rng.choice(STEP_CHOICES))
                req = request(
                    model, steps, int(rng.integers(num_classes)), int(rng.integers(2**31))
                )
                load.outcomes.append(await _send(stub, req, timeout))

        await asyncio.gather(*(caller() for _ in range(callers)))
        load.ended = time.perf_counter()
    return load


class Events:
    """One ``SampleEvents`` call followed in the background: when its first progress event
    and its result came, until it is cancelled (which cancels the job on the server)."""

    def __init__(
        self, stub: pb_grpc.GenerativeServiceStub, req: pb.SampleRequest, timeout: float
    ) -> None:
        self.sent = time.perf_counter()
        self.first_step = asyncio.Event()
        self.first_step_at: float | None = None
        self.done_at: float | None = None
        self.error: str | None = None
        self._call = stub.SampleEvents(req, timeout=timeout)
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        try:
            async for event in self._call:
                kind = event.WhichOneof("event")
                if kind == "progress" and self.first_step_at is None:
                    self.first_step_at = time.perf_counter()
                    self.first_step.set()
                elif kind == "result":
                    self.done_at = time.perf_counter()
                elif kind == "error":
                    self.error = f"{event.error.code}: {event.error.message}"
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                self.error = f"{exc.code().name}: {exc.details()}"
        except asyncio.CancelledError:
            pass
        self.first_step.set()  # ended without a step (error, cancel): stop waiting for one

    async def cancel(self) -> None:
        self._call.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def start_jobs(
    stub: pb_grpc.GenerativeServiceStub,
    model: str,
    count: int,
    steps: int,
    rng: np.random.Generator,
    num_classes: int,
    timeout: float,
) -> list[Events]:
    """Start ``count`` long jobs and return once each has computed its first step."""
    jobs = [
        Events(stub, request(model, steps, int(rng.integers(num_classes)), i), timeout)
        for i in range(count)
    ]
    await asyncio.wait_for(asyncio.gather(*(j.first_step.wait() for j in jobs)), timeout)
    failed = [j.error for j in jobs if j.first_step_at is None]
    if failed:
        raise RuntimeError(f"a long job ended before its first step: {failed[0]}")
    return jobs
