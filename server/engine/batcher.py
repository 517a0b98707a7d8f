"""Dynamic batching in front of one graph.

Requests queue (bounded: a full queue refuses with ``Overloaded``), a batch forms from
requests with the same compatibility key until ``max_batch_size`` items or until the oldest
waited ``max_queue_delay_ms``, and runs in one of the batcher's worker threads so the event
loop keeps serving. Up to ``max_concurrent_batches`` batches run at once: while one batch's
results are encoded and answered and the next requests arrive, another batch computes, so
the graph is not left idle between batches; while batches run, a further one waits until
it holds its share of a full batch or one of them finishes, so that requests arriving one
at a time are not split into batches of one or two. A request of n items may be split across
batches; its parts are joined by offset, whichever batch finishes first. A failing batch
fails only the requests in it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections import deque
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from latentserve.server import tracing
from latentserve.server.engine import deadlines
from latentserve.server.errors import Overloaded, ServingError, Unavailable
from latentserve.server.metrics import ServerMetrics
from latentserve.server.repository.runtime import Runtime
from prometheus_client import Counter, Histogram

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]


class BatchFailed(ServingError):
    """The graph raised or broke the one-output-per-input contract for this batch."""


@dataclass(eq=False, slots=True)
class _Request:
    key: Hashable
    inputs: Arrays
    n: int
    future: asyncio.Future[Arrays]
    enqueued: float
    deadline: float | None  # the client's (``deadlines``): past it, the request is dropped
    served: tuple[Any, ...]  # the request spans it works for (``tracing``), when traced
    dispatched: int = 0  # items already handed to a batch
    received: int = 0  # items whose outputs came back
    parts: dict[int, Arrays] = field(default_factory=dict)  # by start offset


@dataclass(slots=True)
class _Segment:
    request: _Request
    start: int
    stop: int
    waited: float | None = None  # seconds queued, on the request's first segment


def compatibility_key(inputs: Arrays) -> Hashable:
    """Per-item shapes and dtypes: only requests that agree can be concatenated."""
    return tuple((name, a.shape[1:], a.dtype.str) for name, a in sorted(inputs.items()))


class Batcher:
    """The queue of one graph: ``runtime`` is the graph, or one copy per model instance."""

    def __init__(
        self,
        runtime: Runtime | Sequence[Runtime],
        *,
        max_batch_size: int,
        max_queue_delay_ms: float,
        max_queue_size: int,
        max_concurrent_batches: int = 1,
        balance: bool = False,
        model: str = "",
        graph: str = "",
        metrics: ServerMetrics | None = None,
    ) -> None:
        self._instances = list(runtime) if isinstance(runtime, Sequence) else [runtime]
        if not self._instances:
            raise ValueError("a batcher needs at least one instance of its graph")
        self._max_batch = max_batch_size
        self._delay = max_queue_delay_ms / 1000.0
        self._max_queue = max_queue_size
        if max_concurrent_batches < 1:
            raise ValueError(f"max_concurrent_batches must be >= 1, got {max_concurrent_batches}")
        # Each instance runs up to max_concurrent_batches batches: a slot is one of those.
        self._max_running = max_concurrent_batches * len(self._instances)
        self._balance = balance
        self._slots = asyncio.Semaphore(self._max_running)
        # Items a batch needs to start while every instance is computing (``_start_time``).
        self._share = math.ceil(max_batch_size / max_concurrent_batches)
        self._busy = [0] * len(self._instances)  # batches running on each instance
        self._last_start = [0] * len(self._instances)  # when each last got a batch (a count)
        self._starts = 0
        self._instance_of: dict[asyncio.Task[None], int] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._queue: deque[_Request] = deque()
        self._queued_items = 0
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        # A thread per slot, so every instance's batches really run at once.
        self._executor = ThreadPoolExecutor(
            max_workers=self._max_running, thread_name_prefix=f"batch-{graph}"
        )
        self._avg_batch_s = 0.01
        self._closed = False
        self._model, self._graph = model, graph
        self._queue_wait = None
        self._by_instance: list[tuple[Histogram, Histogram, Counter]] = []
        self._drops = None
        if metrics is not None:
            self._drops = functools.partial(metrics.queue_drops.labels, model, graph)
            self._queue_wait = metrics.queue_wait.labels(model, graph)
            # The ``model_instance`` label is an index below the configured count: bounded.
            self._by_instance = [
                (
                    metrics.batch_size.labels(model, graph, str(i)),
                    metrics.compute_time.labels(model, graph, str(i)),
                    metrics.batch_failures.labels(model, graph, str(i)),
                )
                for i in range(len(self._instances))
            ]

    async def submit(self, inputs: Arrays) -> Arrays:
        """Run ``inputs`` (each with the same leading item count) and return its outputs."""
        if self._closed:
            raise Unavailable("server is shutting down")
        n = next(iter(inputs.values())).shape[0]
        if n == 0:
            raise ValueError("empty request")
        if len(self._queue) >= self._max_queue:
            raise Overloaded("queue is full, retry later", self.retry_after_s())
        loop = asyncio.get_running_loop()
        request = _Request(
            compatibility_key(inputs),
            inputs,
            n,
            loop.create_future(),
            loop.time(),
            deadlines.current(),
            tracing.served(),
        )
        if self._dropped(request, request.enqueued):
            return await request.future  # its deadline passed before it was queued
        self._queue.append(request)
        self._queued_items += n
        if self._worker is None:
            self._worker = loop.create_task(self._work())
        self._wakeup.set()
        return await request.future

    def retry_after_s(self) -> int:
        """A rough time for the current queue to drain, rounded up to whole seconds."""
        batches = self._queued_items / self._max_batch + 1
        return max(1, math.ceil(batches * self._avg_batch_s / self._max_running))

    async def close(self) -> None:
        """Refuse new work, fail what is queued or running, and wait for the worker threads."""
        self._closed = True
        tasks = [t for t in (self._worker, *self._running) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for request in self._queue:
            if not request.future.done():
                request.future.set_exception(Unavailable("server is shutting down"))
        self._queue.clear()
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._drop_abandoned_head()
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # Hold a slot before forming the batch: while every slot is busy the queue keeps
            # filling, so the next batch is as large as the backlog allows.
            await self._slots.acquire()
            self._drop_abandoned_head()
            if not self._queue:
                self._slots.release()
                continue
            while (start := self._start_time()) is not None and loop.time() < start:
                self._wakeup.clear()
                try:
                    async with asyncio.timeout_at(None if start == math.inf else start):
                        await self._wakeup.wait()
                except TimeoutError:
                    break
            self._drop_abandoned_head()
            if not self._queue:
                self._slots.release()
                continue
            instance = self._free_instance()
            segments = self._take_batch(loop.time(), self._room())
            task = loop.create_task(self._execute(segments, instance))
            self._busy[instance] += 1
            self._instance_of[task] = instance
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _start_time(self) -> float | None:
        """When the batch at the head of the queue starts: ``None`` for now (a full batch),
        else once its oldest request waited the queue delay. While every instance already
        runs a batch, a further one also waits until it holds its share of a full batch
        (``max_batch_size / max_concurrent_batches``) or a running batch finishes (the
        queue keeps filling; ``inf`` until then). Started at once, it would take the one or
        two requests that arrived meanwhile: when requests trickle in (grpc.aio hands them
        to the loop one at a time), every batch stays that small and the event loop pays
        the per-batch costs once per image or two. The balanced batcher keeps sharing the
        backlog among free slots as it is."""
        if self._queued_items >= self._max_batch:
            return None
        if not self._balance and min(self._busy) > 0 and self._queued_items < self._share:
            return math.inf
        return self._queue[0].enqueued + self._delay

    def _free_instance(self) -> int:
        """The instance the next batch runs on: the least busy, of equals the one that got a
        batch least recently. A slot is held, so it has room for one more batch."""
        instance = min(
            range(len(self._instances)), key=lambda i: (self._busy[i], self._last_start[i])
        )
        self._starts += 1
        self._last_start[instance] = self._starts
        return instance

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._busy[self._instance_of.pop(task)] -= 1
        self._slots.release()
        self._wakeup.set()  # a batch waiting for a running one to finish may start now

    def _drop_abandoned_head(self) -> None:
        # A request whose caller went away, whose deadline passed (or whose earlier part
        # failed) needs no compute.
        now = asyncio.get_running_loop().time()
        while self._queue and self._dropped(self._queue[0], now):
            dropped = self._queue.popleft()
            self._queued_items -= dropped.n - dropped.dispatched

    def _dropped(self, request: _Request, now: float) -> bool:
        """Whether ``request`` leaves the queue uncomputed; counts it by reason if so."""
        reason = deadlines.drop_reason(request.future, request.deadline, now)
        if reason is not None and self._drops is not None:
            self._drops(reason).inc()
        return reason is not None

    def _room(self) -> int:
        """Items the next batch may take. Balanced, the backlog is shared evenly among the
        free batch slots (20 queued, 2 free: 10 now, 10 in the next), so the parts of one
        large call finish together instead of one full batch leaving the other cores idle."""
        if not self._balance:
            return self._max_batch
        free = self._max_running - len(self._running)  # the slot being filled included
        return max(1, min(self._max_batch, math.ceil(self._queued_items / free)))

    def _take_batch(self, now: float, room: int) -> list[_Segment]:
        key = self._queue[0].key
        segments: list[_Segment] = []
        kept: deque[_Request] = deque()
        while self._queue and room > 0:
            request = self._queue.popleft()
            left = request.n - request.dispatched
            if self._dropped(request, now):
                self._queued_items -= left
                continue
            if request.key != key:
                kept.append(request)
                continue
            waited = now - request.enqueued if request.dispatched == 0 else None
            if waited is not None and self._queue_wait is not None:
                self._queue_wait.observe(waited)
            take = min(left, room)
            segment = _Segment(request, request.dispatched, request.dispatched + take, waited)
            segments.append(segment)
            request.dispatched += take
            self._queued_items -= take
            room -= take
            if take < left:
                kept.append(request)  # the rest goes into a later batch, still in order
        kept.extend(self._queue)
        self._queue = kept
        return segments

    async def _execute(self, segments: list[_Segment], instance: int) -> None:
        total = sum(s.stop - s.start for s in segments)
        span = self._trace(segments, total)
        try:
            await self._run_batch(segments, total, instance)
        finally:
            if span is not None:
                span.end()

    def _trace(self, segments: list[_Segment], total: int) -> Any:
        """The batch's span, linked to the requests it serves, and each request's wait for it
        (linked back to it); None when tracing is off."""
        if not tracing.enabled():
            return None
        served = [span for s in segments for span in s.request.served]
        if not served:
            return None
        attributes = {"latentserve.model": self._model, "latentserve.graph": self._graph}
        attributes["latentserve.batch_items"] = total
        span = tracing.batch_span(served, attributes)
        for s in segments:
            if s.waited is not None and len(s.request.served) == 1:
                tracing.record_wait(s.request.served[0], s.waited, links=(span,))
        return span

    async def _run_batch(self, segments: list[_Segment], total: int, instance: int) -> None:
        started = time.perf_counter()
        try:
            inputs = self._assemble(segments)
            outputs = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._instances[instance].run, inputs
            )
            bad = {k: v.shape for k, v in outputs.items() if v.shape[:1] != (total,)}
            if bad or not outputs:
                raise BatchFailed(f"graph returned {bad or 'nothing'} for a batch of {total}")
        except asyncio.CancelledError:
            self._fail(segments, Unavailable("server is shutting down"))
            raise
        except Exception as exc:  # noqa: BLE001 - any graph failure fails this batch only
            log.warning("batch of %d failed on instance %d", total, instance, exc_info=exc)
            if self._by_instance:
                self._by_instance[instance][2].inc()
            if not isinstance(exc, ServingError):  # the runtime's text stays in the log
                exc = BatchFailed("inference failed")
            self._fail(segments, exc)
            return
        elapsed = time.perf_counter() - started
        self._avg_batch_s = 0.8 * self._avg_batch_s + 0.2 * elapsed
        if self._by_instance:
            self._by_instance[instance][0].observe(total)
            self._by_instance[instance][1].observe(elapsed)
        self._distribute(segments, outputs)

    @staticmethod
    def _fail(segments: list[_Segment], error: BaseException) -> None:
        for s in segments:
            if not s.request.future.done():
                s.request.future.set_exception(error)

    @staticmethod
    def _assemble(segments: list[_Segment]) -> Arrays:
        if len(segments) == 1:
            s = segments[0]
            if s.start == 0 and s.stop == s.request.n:
                return s.request.inputs
            return {k: v[s.start : s.stop] for k, v in s.request.inputs.items()}
        names = segments[0].request.inputs.keys()
        return {
            k: np.concatenate([s.request.inputs[k][s.start : s.stop] for s in segments])
            for k in names
        }

    @staticmethod
    def _distribute(segments: list[_Segment], outputs: Arrays) -> None:
        offset = 0
        for s in segments:
            count = s.stop - s.start
            request = s.request
            part = {k: v[offset : offset + count] for k, v in outputs.items()}
            offset += count
            if request.future.done():
                continue
            request.parts[s.start] = part
            request.received += count
            if request.received == request.n:
                parts = [request.parts[start] for start in sorted(request.parts)]
                result = (
                    parts[0]
                    if len(parts) == 1
                    else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
                )
                request.future.set_result(result)
