"""Failure paths of the engine: a step graph or a job's own step that raises, a plain
exception in a job, a failing batch, and finished jobs expiring. Each fails only what it
must, keeps the engine serving, and never sends the exception's own text to a client."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from helpers.fakes import (
    GRAPH_SECRET,
    fake_diffusion_manifest,
    fake_manifest,
    fake_service,
    sample_params,
)
from latentserve.server.engine.jobs import JobManager, JobNotFound, JobState
from latentserve.server.engine.stepping import Arrays, StepEngine
from latentserve.server.errors import INTERNAL_MESSAGE, ServingError
from latentserve.server.metrics import ServerMetrics
from prometheus_client import CollectorRegistry

ADVANCE_SECRET = "advance blew up with state 0x7f3a"


class Counting:
    """A trajectory of ``steps`` steps over one row; ``fail_at`` makes its own step raise."""

    progress = None

    def __init__(self, steps: int, fail_at: int | None = None) -> None:
        self.steps = steps
        self.taken = 0
        self.fail_at = fail_at

    @property
    def done(self) -> bool:
        return self.taken >= self.steps

    def inputs(self) -> Arrays:
        return {"x": np.full((1, 1), self.taken, np.float32)}

    def advance(self, outputs: Arrays) -> None:
        if self.taken + 1 == self.fail_at:
            raise ValueError(ADVANCE_SECRET)
        assert outputs["y"][0, 0] == self.taken + 1
        self.taken += 1


class StepGraph:
    """Adds one to every row; raises ``GRAPH_SECRET`` on the calls in ``fail_calls``."""

    def __init__(self, fail_calls: set[int] = frozenset()) -> None:
        self.calls = 0
        self.fail_calls = fail_calls

    async def __call__(self, inputs: Arrays) -> Arrays:
        self.calls += 1
        await asyncio.sleep(0)  # a real step yields to the loop while the graph runs
        if self.calls in self.fail_calls:
            raise RuntimeError(GRAPH_SECRET)
        return {"y": inputs["x"] + 1}


def assert_generic_internal(error: BaseException, secret: str) -> None:
    assert isinstance(error, ServingError), error
    assert error.code == "internal" and error.message == INTERNAL_MESSAGE
    assert secret not in str(error)


def test_a_step_graph_that_raises_fails_that_iterations_jobs_and_the_engine_keeps_serving() -> None:
    async def main() -> tuple[list, Counting]:
        engine = StepEngine(StepGraph(fail_calls={2}), model="m@1", max_running=8)
        first = [Counting(steps=4), Counting(steps=4)]
        outcomes = await asyncio.gather(*(engine.run(t) for t in first), return_exceptions=True)
        later = Counting(steps=3)
        await asyncio.wait_for(engine.run(later), 10)  # the loop survived the failure
        await engine.close()
        return outcomes, later

    outcomes, later = asyncio.run(main())
    for outcome in outcomes:
        assert_generic_internal(outcome, GRAPH_SECRET)
    assert later.done


def test_an_advance_that_raises_fails_only_its_job() -> None:
    async def main() -> tuple[list, list[Counting]]:
        engine = StepEngine(StepGraph(), model="m@1", max_running=8)
        trajectories = [Counting(5), Counting(5, fail_at=2), Counting(3)]
        outcomes = await asyncio.gather(
            *(engine.run(t) for t in trajectories), return_exceptions=True
        )
        await engine.close()
        return outcomes, trajectories

    (ok, failed, ok2), (a, bad, b) = asyncio.run(main())
    assert ok is None and ok2 is None and a.done and b.done
    assert_generic_internal(failed, ADVANCE_SECRET)
    assert bad.taken == 1


def test_a_failing_denoiser_step_ends_the_job_in_a_generic_error_event(tmp_path: Path) -> None:
    service, graphs = fake_service(
        tmp_path, [fake_diffusion_manifest("fake-ddpm")], max_concurrent_batches=1
    )
    graphs["fake-ddpm@1"]["denoiser"].fail_calls = {3}

    async def main() -> tuple[list, dict]:
        job = await service.submit_job("fake-ddpm", "sample", {"n": 1, "steps": 6}, "test")
        events = [event async for event in job.events()]
        after = await service.sample("fake-ddpm", {"n": 1, "steps": 4, "seed": 1}, "test")
        return events, {"state": job.state, "after": after}

    events, outcome = asyncio.run(main())
    kinds = [event.kind for event in events]
    assert kinds[-1] == "error" and "progress" in kinds  # it failed half-way
    error = events[-1].data
    assert error["code"] == "internal" and error["message"] == "inference failed"
    assert GRAPH_SECRET not in repr(events)
    assert outcome["state"] is JobState.FAILED
    assert len(outcome["after"].images) == 1  # the next job is served


def test_a_plain_exception_in_a_job_fails_it_as_internal_with_a_generic_message() -> None:
    async def main() -> tuple:
        jobs = JobManager(ServerMetrics(CollectorRegistry()), max_jobs=4, ttl_s=60, max_finished=8)

        async def work(progress: object) -> dict:
            raise KeyError(GRAPH_SECRET)

        job = jobs.submit("m@1", "sample", {}, work, render, deadline_s=10, retain=True)
        events = [event async for event in job.events()]
        with pytest.raises(ServingError) as raised:
            await job.wait()
        return job, events, raised.value

    job, events, raised = asyncio.run(main())
    assert job.state is JobState.FAILED
    assert events[-1].kind == "error"
    assert events[-1].data == {"code": "internal", "message": INTERNAL_MESSAGE, "field": None}
    assert_generic_internal(raised, GRAPH_SECRET)


async def render(images: np.ndarray) -> list[bytes]:
    return []


def test_finished_jobs_expire_after_the_ttl() -> None:
    now = [1000.0]
    jobs = JobManager(
        ServerMetrics(CollectorRegistry()),
        max_jobs=4,
        ttl_s=30,
        max_finished=8,
        clock=lambda: now[0],
    )

    async def main() -> str:
        async def work(progress: object) -> dict:
            return {"images": []}

        job = jobs.submit("m@1", "sample", {}, work, render, deadline_s=10, retain=True)
        await job.wait()
        await asyncio.sleep(0)  # the job's task files it among the finished ones
        return job.id

    job_id = asyncio.run(main())
    now[0] += 29.9
    assert jobs.get(job_id).state is JobState.DONE  # still readable within the TTL
    now[0] += 0.2
    with pytest.raises(JobNotFound):
        jobs.get(job_id)


def test_a_failing_batch_is_counted_and_its_error_is_generic(tmp_path: Path) -> None:
    service, graphs = fake_service(tmp_path, [fake_manifest("fake-vae", max_queue_delay_ms=1)])
    graphs["fake-vae@1"]["sampler"].fail_calls = {1}
    registry = service.metrics.registry
    labels = {"model": "fake-vae@1", "graph": "sampler", "model_instance": "0"}

    async def main() -> tuple:
        with pytest.raises(ServingError) as failed:
            await service.sample("fake-vae", sample_params(2, 0), "test")
        return failed.value, await service.sample("fake-vae", sample_params(2, 0), "test")

    before = registry.get_sample_value("latentserve_batch_failures_total", labels) or 0.0
    error, after = asyncio.run(main())
    assert registry.get_sample_value("latentserve_batch_failures_total", labels) == before + 1
    assert error.code == "internal" and GRAPH_SECRET not in str(error)
    assert len(after.images) == 2
