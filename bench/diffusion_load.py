"""gRPC load shapes for the diffusion benchmark (grpc.aio, 127.0.0.1 only, always bounded).

Every shape sends the jobs of one ``Workload``: class-conditional ``Sample`` jobs or
``TextToImage`` jobs, each with a random class or prompt.

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
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc

STEP_CHOICES = (10, 25, 50)
TEXT_TO_IMAGE = "text-to-image"
METHODS = ("sample", TEXT_TO_IMAGE)

Request = pb.SampleRequest | pb.TextToImageRequest


@dataclass(frozen=True)
class Workload:
    """What the benchmark asks of a model: ``Sample`` jobs with a random class (method
    "sample") or ``TextToImage`` jobs with a random prompt of ``prompts``; ``n=1``, DDIM, the
    model's own guidance scale; closed-loop callers draw each job's steps from ``steps``."""

    model: str
    method: str
    num_classes: int = 0
    prompts: tuple[str, ...] = ()
    steps: tuple[int, ...] = STEP_CHOICES

    @property
    def choices(self) -> int:
        """How many classes or prompts a request draws from."""
        return len(self.prompts) if self.method == TEXT_TO_IMAGE else self.num_classes

    def request(self, steps: int, choice: int, seed: int) -> Request:
        common: dict[str, Any] = {"model": self.model, "n": 1, "seed": seed, "steps": steps}
        if self.method == TEXT_TO_IMAGE:
            return pb.TextToImageRequest(prompt=self.prompts[choice], sampler="ddim", **common)
        return pb.SampleRequest(sampler="ddim", class_label=choice, **common)

    def unary(self, stub: pb_grpc.GenerativeServiceStub) -> Any:
        return stub.TextToImage if self.method == TEXT_TO_IMAGE else stub.Sample

    def events(self, stub: pb_grpc.GenerativeServiceStub) -> Any:
        return stub.TextToImageEvents if self.method == TEXT_TO_IMAGE else stub.SampleEvents


@dataclass(frozen=True)
class Arrival:
    """One scheduled request: when (seconds after the start) and what it asks (``choice``:
    a class label or a prompt's index)."""

    at: float
    steps: int
    choice: int
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
    rate: float,
    duration: float,
    choices: int,
    seed: int,
    max_requests: int,
    steps: Sequence[int] = STEP_CHOICES,
) -> list[Arrival]:
    """Poisson arrivals at ``rate``/s for ``duration`` s (at most ``max_requests``), each
    job's steps drawn uniformly from ``steps``; the same seed gives the same schedule, so
    both batching modes meet identical traffic."""
    rng = np.random.default_rng(seed)
    arrivals, at = [], 0.0
    while len(arrivals) < max_requests:
        at += rng.exponential(1.0 / rate)
        if at > duration:
            break
        arrival_steps = int(rng.choice(steps))
        arrivals.append(
            Arrival(at, arrival_steps, int(rng.integers(choices)), seed * 100_000 + len(arrivals))
        )
    return arrivals


@contextlib.asynccontextmanager
async def channel(target: str) -> AsyncIterator[pb_grpc.GenerativeServiceStub]:
    if not target.startswith("127.0.0.1:"):
        raise ValueError(f"the benchmark only loads 127.0.0.1, not {target}")
    async with grpc.aio.insecure_channel(target) as chan:
        yield pb_grpc.GenerativeServiceStub(chan)


async def send(
    stub: pb_grpc.GenerativeServiceStub, workload: Workload, req: Request, timeout: float
) -> Outcome:
    """One unary request, timed from send to answer."""
    outcome = Outcome(sent=time.perf_counter(), steps=req.steps)
    try:
        await workload.unary(stub)(req, timeout=timeout)
        outcome.finished = time.perf_counter()
    except grpc.aio.AioRpcError as exc:
        outcome.error = exc.code().name
    return outcome


async def poisson(target: str, workload: Workload, arrivals: list[Arrival], timeout: float) -> Load:
    """Send each arrival at its time (open loop) and wait for every answer or deadline."""
    async with channel(target) as stub:
        load = Load(started=time.perf_counter())

        async def one(arrival: Arrival) -> Outcome:
            await asyncio.sleep(max(0.0, load.started + arrival.at - time.perf_counter()))
            req = workload.request(arrival.steps, arrival.choice, arrival.seed)
            return await send(stub, workload, req, timeout)

        load.outcomes = list(await asyncio.gather(*(one(a) for a in arrivals)))
        load.ended = time.perf_counter()
    return load


async def closed_loop(
    target: str, workload: Workload, callers: int, duration: float, seed: int, timeout: float
) -> Load:
    """``callers`` clients each sending its next request when its last is answered; the
    load counts requests sent within ``duration`` s (the last ones finish after it)."""
    rng = np.random.default_rng(seed)
    async with channel(target) as stub:
        load = Load(started=time.perf_counter())
        stop_at = load.started + duration

        async def caller() -> None:
            while time.perf_counter() < stop_at:
                steps = int(rng.choice(workload.steps))
                choice = int(rng.integers(workload.choices))
                req = workload.request(steps, choice, int(rng.integers(2**31)))
                load.outcomes.append(await send(stub, workload, req, timeout))

        await asyncio.gather(*(caller() for _ in range(callers)))
        load.ended = time.perf_counter()
    return load


class Events:
    """One job's event stream (``SampleEvents`` / ``TextToImageEvents``) followed in the
    background: when its first progress event and its result came, until it is cancelled
    (which cancels the job on the server)."""

    def __init__(
        self,
        stub: pb_grpc.GenerativeServiceStub,
        workload: Workload,
        req: Request,
        timeout: float,
    ) -> None:
        self.sent = time.perf_counter()
        self.first_step = asyncio.Event()
        self.first_step_at: float | None = None
        self.done_at: float | None = None
        self.error: str | None = None
        self._call = workload.events(stub)(req, timeout=timeout)
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
    workload: Workload,
    count: int,
    steps: int,
    rng: np.random.Generator,
    timeout: float,
) -> list[Events]:
    """Start ``count`` long jobs and return once each has computed its first step."""
    requests = [
        workload.request(steps, int(rng.integers(workload.choices)), i) for i in range(count)
    ]
    jobs = [Events(stub, workload, req, timeout) for req in requests]
    await asyncio.wait_for(asyncio.gather(*(j.first_step.wait() for j in jobs)), timeout)
    failed = [j.error for j in jobs if j.first_step_at is None]
    if failed:
        raise RuntimeError(f"a long job ended before its first step: {failed[0]}")
    return jobs
