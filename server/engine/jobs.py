"""Jobs: the unit the service admits, tracks, streams and cancels.

Every sample request is a job, whichever transport it came by and whether the client waits
for the answer (``POST .../sample``), follows its events (Server-Sent Events, gRPC
streaming) or polls it (``/v1/jobs``). Admission is decided once, at submission: at most
``max_jobs`` jobs are queued or running, and a job that was admitted is never refused
half-way through. A job's work is one asyncio task; cancelling it (``DELETE``, a gRPC
cancellation or deadline, an HTTP client that went away) cancels the task, which stops
the pipeline at its next step boundary. Finished jobs stay readable for ``ttl_s``. At
shutdown, jobs still running when the drain deadline passes end ``failed`` with
``unavailable``, so no watcher is left without a final event.

A job store (``job_store.py``) is where jobs this process does not hold are looked for:
with the memory store nowhere; with the shared (Redis) store, the jobs of every replica,
which also hears the jobs admitted here.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from latentserve.server import tracing
from latentserve.server.engine import deadlines
from latentserve.server.engine.memory_job_store import MemoryJobStore
from latentserve.server.errors import Overloaded, ServingError, Unavailable, for_client
from latentserve.server.metrics import ServerMetrics

if TYPE_CHECKING:
    from latentserve.server.engine.job_store import JobStore

log = logging.getLogger(__name__)

#: A job id as ``Job`` makes them (a UUID4's hex); anything else names no job.
_JOB_ID = re.compile(r"[0-9a-f]{32}")


class JobNotFound(ServingError):
    code = "not_found"


class Cancelled(ServingError):
    """The job was cancelled before it finished (by its client or a ``DELETE``)."""

    code = "cancelled"


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class JobEvent:
    """One event of a job, the same for every transport.

    ``kind`` is ``accepted``, ``queued``, ``progress``, ``preview``, ``result`` or
    ``error``; ``data`` holds its fields (PNG bytes for previews and results). ``id``
    numbers a job's events from 1 in the order they happened (set when emitted), so a
    client that lost its stream can resume after the last one it saw.
    """

    kind: str
    data: dict[str, Any]
    id: int = 0


class Progress:
    """What a pipeline reports into while it works for a job; it knows nothing of wires."""

    def __init__(
        self,
        job: Job,
        render: Callable[[np.ndarray], Awaitable[list[bytes]]],
        metrics: ServerMetrics,
    ) -> None:
        self._job = job
        self._render = render
        self._metrics = metrics
        self._previews: set[asyncio.Task[None]] = set()

    def queued(self, position: int) -> None:
        """The job waits for a place among the running ones; ``position`` 0 is next."""
        self._job._update(JobState.QUEUED, position=position)
        self._job._emit(JobEvent("queued", {"position": position}))

    def started(self, steps: int) -> None:
        self._job._update(JobState.RUNNING, position=None, steps=steps)

    def step(self, step: int, steps: int) -> None:
        if step == 1:
            waited = time.perf_counter() - self._job._submitted
            self._metrics.time_to_first_step.labels(self._job.model).observe(waited)
        self._job._update(JobState.RUNNING, step=step, steps=steps)
        self._job._emit(JobEvent("progress", {"step": step, "steps": steps}))

    def preview(self, step: int, images: Awaitable[np.ndarray]) -> None:
        """Render the current estimate off the pipeline's path; the latest one is kept."""
        task = asyncio.get_running_loop().create_task(self._send_preview(step, images))
        self._previews.add(task)
        task.add_done_callback(self._previews.discard)

    async def _send_preview(self, step: int, images: Awaitable[np.ndarray]) -> None:
        pngs = await self._render(await images)
        self._job.preview = pngs
        self._job._emit(JobEvent("preview", {"step": step, "images": pngs}))

    async def flush(self) -> None:
        """Let previews being rendered go out before the result does."""
        if self._previews:
            await asyncio.gather(*self._previews, return_exceptions=True)


Work = Callable[[Progress], Awaitable[dict[str, Any]]]


class JobView(Protocol):
    """What the transports read of a job, wherever it runs: a ``Job`` of this process, or
    the record another replica published to the shared store."""

    id: str
    model: str
    method: str
    state: JobState
    position: int | None
    step: int
    steps: int
    params: dict[str, Any]
    created: float
    preview: list[bytes] | None
    result: dict[str, Any] | None
    error: ServingError | None

    def events(self, after: int = 0) -> AsyncIterator[JobEvent]: ...


class Job:
    """One admitted request: its state, progress, latest preview and result."""

    def __init__(self, model: str, method: str, params: dict[str, Any]) -> None:
        self.id = uuid.uuid4().hex  # the form _JOB_ID matches
        self.model = model
        self.method = method
        self.params = params
        self.state = JobState.QUEUED
        self.position: int | None = None
        self.step = 0
        self.steps = 0
        self.preview: list[bytes] | None = None
        self.result: dict[str, Any] | None = None
        self.error: ServingError | None = None
        self.created = time.time()
        self.finished_at: float | None = None
        self._submitted = time.perf_counter()
        self._history: dict[str, JobEvent] = {}  # the latest of each kind, oldest first
        self._emitted = 0  # events so far: the id of the latest one
        self._listeners: list[asyncio.Queue[JobEvent]] = []
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ended_by: ServingError | None = None  # why the server stopped it, if it did
        self._timer: asyncio.TimerHandle | None = None  # ends it at its deadline
        # Told of every change (the event, or None for a state change without one) by a
        # shared job store that publishes the job to the other replicas; None: no one.
        self.on_change: Callable[[JobEvent | None], None] | None = None

    def _update(self, state: JobState, **fields: Any) -> None:
        if not self.state.finished:
            self.state = state
            for name, value in fields.items():
                setattr(self, name, value)
            if self.on_change is not None:
                self.on_change(None)

    def _emit(self, event: JobEvent) -> None:
        self._emitted += 1
        # built anew, not by dataclasses.replace, which costs several times more per event
        event = JobEvent(event.kind, event.data, self._emitted)
        # Only what a late listener needs to catch up is kept: the latest of each kind.
        self._history.pop(event.kind, None)
        self._history[event.kind] = event
        for queue in self._listeners:
            queue.put_nowait(event)
        if self.on_change is not None:
            self.on_change(event)

    def cancel(self) -> bool:
        """Stop the job at its next step boundary; False if it had already finished."""
        if self.state.finished or self._task is None:
            return False
        self._task.cancel()
        return True

    def on_finished(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` once the job's work has ended, however it ended."""
        assert self._task is not None, "the job has not started"
        self._task.add_done_callback(lambda _: callback())

    async def wait(self) -> dict[str, Any]:
        """The result, or the job's error raised; cancelling the waiter cancels the job."""
        try:
            await self._done.wait()
        except asyncio.CancelledError:
            self.cancel()
            raise
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    async def events(self, after: int = 0) -> AsyncIterator[JobEvent]:
        """``accepted``, what happened so far (latest of each kind), then live events up to
        the final ``result`` or ``error``. ``after``: resume past the event with that id,
        catching up with the latest of each kind since then."""
        missed = [event for event in self._history.values() if event.id > after]
        if self.state.finished:  # its final event is in the history: nothing more will come
            for event in missed:
                yield event
            return
        queue: asyncio.Queue[JobEvent] = asyncio.Queue()
        for event in missed:
            queue.put_nowait(event)
        self._listeners.append(queue)
        try:
            while True:
                event = await queue.get()
                yield event
                if event.kind in ("result", "error"):
                    return
        finally:
            self._listeners.remove(queue)


class JobManager:
    """Admission, bookkeeping and expiry of jobs (one per server, shared by all models)."""

    def __init__(
        self,
        metrics: ServerMetrics,
        *,
        max_jobs: int,
        ttl_s: float,
        max_finished: int,
        store: JobStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``store``: where jobs not held here are found (default: nowhere, the memory
        store)."""
        self._store: JobStore = store if store is not None else MemoryJobStore()
        self._metrics = metrics
        self._clock = clock
        self._max_jobs = max_jobs
        metrics.max_jobs.set(max_jobs)
        self._ttl_s = ttl_s
        self._max_finished = max_finished
        self._active: dict[str, Job] = {}
        self._finished: OrderedDict[str, Job] = OrderedDict()
        self._closed = False

    @property
    def active(self) -> int:
        return len(self._active)

    @property
    def store(self) -> JobStore:
        return self._store

    async def start(self) -> None:
        """Connect the job store; a cancel it relays for a job running here stops it."""
        await self._store.start(self._cancel_here)

    def _cancel_here(self, job_id: str) -> bool:
        job = self._active.get(job_id)
        return job is not None and job.cancel()

    def submit(
        self,
        model: str,
        method: str,
        params: dict[str, Any],
        work: Work,
        render: Callable[[np.ndarray], Awaitable[list[bytes]]],
        *,
        deadline_s: float,
        retain: bool,
    ) -> Job:
        """Admit and start a job, or refuse it now with ``Overloaded``."""
        if self._closed:
            raise Unavailable("server is shutting down")
        if len(self._active) >= self._max_jobs:
            self._metrics.child(self._metrics.jobs, model, method, "refused").inc()
            raise Overloaded(f"{self._max_jobs} jobs are queued or running, retry later")
        job = Job(model, method, params)
        if retain:  # a job clients address by its id: the other replicas hear of it too
            self._store.track(job)
        job._emit(JobEvent("accepted", {"job_id": job.id, "model": model, **params}))
        self._active[job.id] = job
        self._metrics.child(self._metrics.jobs_active, model).inc()
        loop = asyncio.get_running_loop()
        job._task = loop.create_task(self._run(job, work, render, retain))
        # One timer per job, cancelled when it ends: a timeout scope around its work cost
        # the event loop several times more per request (bench/README.md).
        at, why = deadlines.ending(deadline_s, "job")
        job._timer = loop.call_at(at, self._out_of_time, job, why)
        return job

    @staticmethod
    def _out_of_time(job: Job, why: Callable[[], ServingError]) -> None:
        """The job's deadline (the server's limit, or its client's) passed: stop it, saying
        which one ended it."""
        if job._task is not None and not job._task.done() and job._ended_by is None:
            job._ended_by = why()
            job._task.cancel()

    def get(self, job_id: str) -> Job:
        """A job this process holds (running, or finished and retained)."""
        job = self._held(job_id)
        if job is None:
            raise _unknown(job_id, self._ttl_s)
        return job

    def _held(self, job_id: str) -> Job | None:
        self._expire()
        if not _JOB_ID.fullmatch(job_id):  # not an id this server makes: not echoed back
            raise JobNotFound("no such job: a job id is 32 lowercase hexadecimal digits")
        return self._active.get(job_id) or self._finished.get(job_id)

    async def published(self, job: Job) -> None:
        """Return once the store has the job as it is now (other replicas can find it)."""
        await self._store.published(job)

    async def find(self, job_id: str) -> JobView:
        """The job, held here or found in the store (another replica's)."""
        job = self._held(job_id)
        if job is not None:
            return job
        view = await self._store.find(job_id)
        if view is None:
            raise _unknown(job_id, self._ttl_s)
        return view

    async def cancel(self, job_id: str) -> JobView:
        """Cancel the job here, or ask the replica that runs it to (through the store)."""
        job = self._held(job_id)
        if job is not None:
            job.cancel()
            return job
        view = await self._store.cancel(job_id)
        if view is None:
            raise _unknown(job_id, self._ttl_s)
        return view

    async def drain(self, timeout_s: float) -> int:
        """Give the active jobs ``timeout_s`` to finish, then end the rest as failed
        (``unavailable``: the server shut down) so that each watcher hears a final event
        while its connection is still open. Returns how many jobs were ended so."""
        self._store.stop_following()  # no other replica's job holds the shutdown
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._active and (left := deadline - loop.time()) > 0:
            # jobs admitted meanwhile (a call accepted just before the drain) are waited for too
            await asyncio.wait(self._tasks(), timeout=left)
        late = list(self._active.values())
        for job in late:
            job._ended_by = Unavailable("the server shut down before the job finished")
            if job._task is not None:
                job._task.cancel()
        await asyncio.gather(*self._tasks(late), return_exceptions=True)
        if late:
            log.warning("drain deadline passed: %d running jobs ended as failed", len(late))
        return len(late)

    def _tasks(self, jobs: list[Job] | None = None) -> list[asyncio.Task[None]]:
        jobs = list(self._active.values()) if jobs is None else jobs
        return [job._task for job in jobs if job._task is not None]

    async def close(self) -> None:
        """Refuse new jobs and cancel the running ones (after the server drained), then
        let the store publish their ends and disconnect."""
        self._closed = True
        tasks = self._tasks()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._store.close()

    async def _run(self, job: Job, work: Work, render: Any, retain: bool) -> None:
        progress = Progress(job, render, self._metrics)
        try:
            result = await work(progress)
            await progress.flush()
            job.result = result
            self._finish(job, JobState.DONE, JobEvent("result", result))
        except asyncio.CancelledError:
            if job._ended_by is None:
                self._finish(
                    job, JobState.CANCELLED, _error_event("cancelled", "job was cancelled")
                )
            else:
                self._fail(job, job._ended_by)
        except ServingError as exc:
            self._fail(job, exc)
        except Exception as exc:  # noqa: BLE001 - a job's failure must not take the server down
            log.exception("job %s (%s %s) failed", job.id, job.model, job.method)
            job.error = for_client(exc)
            self._finish(job, JobState.FAILED, _error_event(job.error.code, job.error.message))
        finally:
            if job._timer is not None:
                job._timer.cancel()
            for task in progress._previews:
                task.cancel()
        if not retain:
            return
        self._finished[job.id] = job
        self._expire()

    def _fail(self, job: Job, exc: ServingError) -> None:
        job.error = exc
        field = getattr(exc, "field", None)
        self._finish(job, JobState.FAILED, _error_event(exc.code, exc.message, field))

    def _finish(self, job: Job, state: JobState, event: JobEvent) -> None:
        if state is JobState.CANCELLED:
            job.error = Cancelled("job was cancelled")
        job.state = state
        job.position = None
        job.finished_at = self._clock()
        job._emit(event)
        job._done.set()
        self._active.pop(job.id, None)
        m = self._metrics
        m.child(m.jobs_active, job.model).dec()
        m.child(m.jobs, job.model, job.method, state.value).inc()
        seconds = time.perf_counter() - job._submitted
        m.child(m.job_latency, job.model, job.method).observe(seconds, tracing.exemplar())

    def _expire(self) -> None:
        cutoff = self._clock() - self._ttl_s
        while self._finished:
            oldest = next(iter(self._finished.values()))
            if len(self._finished) <= self._max_finished and (oldest.finished_at or 0) > cutoff:
                break
            self._finished.popitem(last=False)


def _unknown(job_id: str, ttl_s: float) -> JobNotFound:
    return JobNotFound(f"no job {job_id!r} (unknown, or finished more than {ttl_s:g}s ago)")


def _error_event(code: str, message: str, field: str | None = None) -> JobEvent:
    return JobEvent("error", {"code": code, "message": message, "field": field})
