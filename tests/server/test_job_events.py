"""Job events carry ids, resume after the last one a client saw, and an idle event stream
sends keep-alive comments — driven through the engine's JobManager and the REST frontend's
event stream, with the job held at a gate the test opens."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from latentserve.server.engine.jobs import Cancelled, JobManager, Progress
from latentserve.server.frontends.rest.jobs import KEEPALIVE, event_stream
from latentserve.server.metrics import ServerMetrics
from prometheus_client import CollectorRegistry


async def _render(images: np.ndarray) -> list[bytes]:
    return [b"png"] * len(images)


def _manager() -> JobManager:
    metrics = ServerMetrics(CollectorRegistry())
    return JobManager(metrics, max_jobs=4, ttl_s=60.0, max_finished=8)


def _gated_work(gate: asyncio.Event, steps: int = 3) -> Any:
    async def work(progress: Progress) -> dict[str, Any]:
        progress.started(steps)
        await gate.wait()
        for step in range(1, steps + 1):
            progress.step(step, steps)
        return {"model": "m@1", "seed": 7, "images": [b"png"]}

    return work


def _submit(manager: JobManager, work: Any) -> Any:
    params = {"seed": 7}
    return manager.submit("m@1", "sample", params, work, _render, deadline_s=60.0, retain=True)


def test_events_are_numbered_in_order_and_resume_after_the_last_seen() -> None:
    async def main() -> tuple[list, list, list]:
        gate = asyncio.Event()
        gate.set()
        job = _submit(_manager(), _gated_work(gate))
        everything = [e async for e in job.events()]
        resumed = [e async for e in job.events(after=1)]
        past_the_end = [e async for e in job.events(after=everything[-1].id)]
        return everything, resumed, past_the_end

    everything, resumed, past_the_end = asyncio.run(main())
    kinds = [e.kind for e in everything]
    assert kinds[0] == "accepted" and kinds[-1] == "result"
    ids = [e.id for e in everything]
    assert ids[0] == 1 and ids == sorted(ids) and len(set(ids)) == len(ids)
    # The history keeps the latest of each kind: progress 3 of 3, then the result.
    assert [e.kind for e in resumed] == ["progress", "result"]
    assert resumed[0].data == {"step": 3, "steps": 3}
    assert all(e.id > 1 for e in resumed)
    assert past_the_end == []  # a finished job the client saw to the end: nothing more


def test_an_idle_event_stream_sends_keep_alive_comments_then_the_events() -> None:
    async def main() -> list[str]:
        gate = asyncio.Event()
        job = _submit(_manager(), _gated_work(gate))
        chunks: list[str] = []
        async for chunk in event_stream(job, False, keepalive_s=0.01):
            chunks.append(chunk)
            if chunk == KEEPALIVE and not gate.is_set():
                gate.set()  # the job was held while the stream had nothing to say
        return chunks

    chunks = asyncio.run(main())
    assert chunks[0].startswith("id: 1\nevent: accepted\n")
    assert KEEPALIVE in chunks
    events = [c for c in chunks if c != KEEPALIVE]
    assert events[-1].split("\n")[1] == "event: result"
    ids = [int(c.split("\n")[0].removeprefix("id: ")) for c in events]
    assert ids == sorted(ids) and ids[0] == 1


def test_a_closed_event_stream_cancels_the_job_only_when_asked() -> None:
    async def main() -> None:
        manager = _manager()
        gate = asyncio.Event()
        watched, requested = (_submit(manager, _gated_work(gate)) for _ in range(2))
        for job, cancel_on_close in ((watched, False), (requested, True)):
            stream = event_stream(job, cancel_on_close, keepalive_s=60.0)
            assert (await anext(stream)).startswith("id: 1\n")
            await stream.aclose()  # the client went away
        with pytest.raises(Cancelled):
            await asyncio.wait_for(requested.wait(), 30)
        assert not watched.state.finished
        gate.set()
        assert (await asyncio.wait_for(watched.wait(), 30))["seed"] == 7

    asyncio.run(main())


@pytest.mark.parametrize("cancel_on_close", [False, True])
def test_a_stream_cancelled_while_it_waits_for_an_event_ends_cancelled(
    cancel_on_close: bool,
) -> None:
    """A client hanging up cancels the task iterating the stream (Starlette cancels its
    scope) while the stream waits for the job's next event: the stream ends cancelled,
    not with ``aclose(): asynchronous generator is already running``, and stops following
    the job."""

    async def main() -> None:
        manager = _manager()
        gate = asyncio.Event()
        job = _submit(manager, _gated_work(gate))
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in event_stream(job, cancel_on_close, keepalive_s=60.0):
                first.set()

        consumer = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 30)
        await asyncio.sleep(0)  # the stream now waits for the next event
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        for _ in range(100):  # the job's event generator ends in the task that ran it
            if not job._listeners:
                break
            await asyncio.sleep(0)
        assert not job._listeners
        if cancel_on_close:
            with pytest.raises(Cancelled):
                await asyncio.wait_for(job.wait(), 30)
        else:
            gate.set()
            assert (await asyncio.wait_for(job.wait(), 30))["seed"] == 7

    asyncio.run(main())
