"""Iteration-level batching: one step graph call per iteration for every running job.

A multi-step job (a diffusion sampler's loop) hands the engine a ``Trajectory``: the rows
it needs computed this iteration and what to do with their outputs. Each iteration the
engine admits waiting jobs, drops cancelled ones, concatenates the rows of all running
jobs — at different steps, with different step counts, samplers and guidance — into one
step-graph call, and gives every job back its rows. A job that arrives mid-sampling joins
the very next iteration; a finished or cancelled job leaves at once, so a cancelled job
costs at most the one step already in flight.

Why a loop rather than each job awaiting the graph's batcher on its own (as the
autoregressive pipeline does): with per-job loops, jobs whose step returned together drift
into cohorts that alternate on the graph, halving the batch; a loop keeps every running
job in one call per iteration, and it makes request-level batching (the static-batching
baseline the benchmark compares against) a one-line admission rule. The call still goes
through the graph's batcher, which splits it at ``max_batch_size`` and runs the parts
concurrently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

import numpy as np
from latentserve.server import tracing
from latentserve.server.engine import deadlines
from latentserve.server.engine.jobs import Progress
from latentserve.server.errors import Unavailable, for_client
from latentserve.server.metrics import ServerMetrics

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]
StepBatching = Literal["iteration", "request"]


class Trajectory(Protocol):
    """One job's multi-step generation, advanced by the engine one step at a time."""

    progress: Progress | None
    steps: int

    @property
    def done(self) -> bool: ...

    def inputs(self) -> Arrays:
        """The rows this job needs from the step graph now (same names for every job)."""

    def advance(self, outputs: Arrays) -> None:
        """Take this job's output rows and move one step on."""


class _Entry:
    __slots__ = ("trajectory", "future", "deadline", "span", "waiting_since")

    def __init__(self, trajectory: Trajectory, future: asyncio.Future[None]) -> None:
        self.trajectory = trajectory
        self.future = future
        self.deadline = deadlines.current()  # the job's client deadline, if it has one
        self.span = tracing.current()  # the job's, when traced: its steps' batches link to it
        self.waiting_since = time.perf_counter() if self.span is not None else 0.0


class StepEngine:
    """Drives every running trajectory of one model through its step graph."""

    def __init__(
        self,
        step: Callable[[Arrays], Awaitable[Arrays]],
        *,
        model: str,
        max_running: int,
        batching: StepBatching = "iteration",
        metrics: ServerMetrics | None = None,
    ) -> None:
        self._step = step
        self._model = model
        self._max_running = max_running
        self._batching = batching
        self._metrics = metrics
        self._waiting: deque[_Entry] = deque()
        self._running: list[_Entry] = []
        self._wakeup = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._closed = False

    async def run(self, trajectory: Trajectory) -> None:
        """Return once ``trajectory`` is done; cancelling the caller drops it at the next
        iteration boundary."""
        if self._closed:
            raise Unavailable("server is shutting down")
        loop = asyncio.get_running_loop()
        entry = _Entry(trajectory, loop.create_future())
        self._waiting.append(entry)
        if self._loop_task is None:
            self._loop_task = loop.create_task(self._loop())
        if trajectory.progress is not None:
            trajectory.progress.queued(len(self._waiting) - 1)
        self._wakeup.set()
        await entry.future

    async def close(self) -> None:
        self._closed = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        for entry in (*self._waiting, *self._running):
            if not entry.future.done():
                entry.future.set_exception(Unavailable("server is shutting down"))

    # -- the loop --------------------------------------------------------------------------

    async def _loop(self) -> None:
        deadlines.detach()  # the loop steps every job: no one job's deadline bounds it
        tracing.detach()  # nor does the trace of the job that started it
        while True:
            self._admit()
            if not self._running:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = list(self._running)
            try:
                await self._iterate(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a failed step fails its jobs only
                error = for_client(exc)
                log.warning("step of %d jobs failed", len(batch), exc_info=exc)
                for entry in batch:
                    if not entry.future.done():
                        entry.future.set_exception(error)
            self._running = [e for e in self._running if not e.future.done()]

    def _admit(self) -> None:
        # Jobs cancelled while waiting or mid-step (their future is done) leave here, and
        # waiting jobs whose deadline passed leave before their first step.
        self._running = [e for e in self._running if not e.future.done()]
        now = asyncio.get_running_loop().time()
        self._waiting = deque(e for e in self._waiting if not self._dropped(e, now))
        if self._batching == "iteration" or not self._running:
            admitted = False
            while self._waiting and len(self._running) < self._max_running:
                entry = self._waiting.popleft()
                if entry.span is not None:
                    tracing.record_wait(entry.span, time.perf_counter() - entry.waiting_since)
                if entry.trajectory.progress is not None:
                    entry.trajectory.progress.started(entry.trajectory.steps)
                self._running.append(entry)
                admitted = True
            if admitted:
                self._report_positions()
        if self._metrics is not None:
            self._metrics.jobs_running.labels(self._model).set(len(self._running))
            self._metrics.jobs_queued.labels(self._model).set(len(self._waiting))

    def _dropped(self, entry: _Entry, now: float) -> bool:
        reason = deadlines.drop_reason(entry.future, entry.deadline, now)
        if reason is not None and self._metrics is not None:
            self._metrics.queue_drops.labels(self._model, "steps", reason).inc()
        return reason is not None

    async def _iterate(self, batch: list[_Entry]) -> None:
        rows = [entry.trajectory.inputs() for entry in batch]
        counts = [next(iter(r.values())).shape[0] for r in rows]
        inputs = {name: np.concatenate([r[name] for r in rows]) for name in rows[0]}
        with tracing.serving(entry.span for entry in batch):
            outputs = await self._step(inputs)
        offset = 0
        for entry, count in zip(batch, counts, strict=True):
            part = {k: v[offset : offset + count] for k, v in outputs.items()}
            offset += count
            if entry.future.done():  # cancelled while its step ran: that step is wasted
                continue
            try:
                entry.trajectory.advance(part)
            except Exception as exc:  # noqa: BLE001 - one job's bad step fails that job
                log.warning("a job's step failed", exc_info=exc)
                entry.future.set_exception(for_client(exc))
                continue
            if entry.trajectory.done:
                entry.future.set_result(None)
        if self._metrics is not None:
            self._metrics.step_iterations.labels(self._model).inc()
            self._metrics.job_steps.labels(self._model).inc(len(batch))
            self._metrics.step_batch_jobs.labels(self._model).observe(len(batch))

    def _report_positions(self) -> None:
        for position, entry in enumerate(self._waiting):
            if entry.trajectory.progress is not None:
                entry.trajectory.progress.queued(position)
