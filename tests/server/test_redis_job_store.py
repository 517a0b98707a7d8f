"""The Redis job store against a real ``redis-server``: two services in one process play
two replicas sharing it (real service, pipeline, engine and batcher over a fake denoiser),
so one's jobs are read, followed, resumed and cancelled through the other; a job whose
replica's lease lapsed is reported failed; a job's event stream stays bounded."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from helpers.fakes import fake_diffusion_manifest, fake_service
from helpers.redis_server import running_redis
from helpers.tools import require_tool
from latentserve.server.engine.jobs import Cancelled, Job, JobEvent, JobNotFound, JobState
from latentserve.server.engine.redis_job_record import JobKeys
from latentserve.server.engine.redis_job_store import RedisJobStore
from latentserve.server.engine.service import GenerativeService
from latentserve.server.settings import Settings
from pydantic import ValidationError

MODEL = "fake-ddpm"


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = require_tool("redis-server")
    with running_redis(binary, tmp_path_factory.mktemp("redis")) as url:
        yield url


def replica(tmp_path: Path, name: str, redis_url: str, **settings: object) -> GenerativeService:
    service, _ = fake_service(
        tmp_path / name,
        [fake_diffusion_manifest(MODEL)],
        0.005,
        job_store="redis",
        redis_url=redis_url,
        **settings,
    )
    return service


async def two_replicas(
    tmp_path: Path, redis_url: str, **settings: object
) -> tuple[GenerativeService, GenerativeService]:
    a, b = (replica(tmp_path, name, redis_url, **settings) for name in ("a", "b"))
    await a.jobs.start()
    await b.jobs.start()
    return a, b


async def collect(events: object) -> list[JobEvent]:
    return [event async for event in events]  # type: ignore[attr-defined]


def test_another_replica_reads_follows_and_resumes_a_job(tmp_path: Path, redis_url: str) -> None:
    async def main() -> None:
        a, b = await two_replicas(tmp_path, redis_url)
        try:
            job = await a.submit_job(MODEL, "sample", {"n": 2, "steps": 6, "seed": 3}, "test")
            seen = await b.get_job(job.id)  # published before the submission answered
            assert not isinstance(seen, Job)
            assert (seen.model, seen.method, seen.params["steps"]) == (f"{MODEL}@1", "sample", 6)
            events = await collect(seen.events())
            result = await job.wait()
            kinds = [e.kind for e in events]
            assert kinds[0] == "accepted" and kinds[-1] == "result"
            assert [e.data["step"] for e in events if e.kind == "progress"][-1] == 6
            assert [e.id for e in events] == sorted({e.id for e in events})
            assert events[-1].data["images"] == result["images"]

            done = await b.get_job(job.id)
            assert done.state is JobState.DONE and done.step == 6
            assert done.result is not None and done.result["images"] == result["images"]
            assert done.result["seed"] == 3
            # resumed after an event: only later ones, the latest of each kind
            middle = events[len(events) // 2].id
            resumed = await collect(done.events(after=middle))
            assert resumed and all(e.id > middle for e in resumed)
            assert resumed[-1].kind == "result"
            assert len({e.kind for e in resumed}) == len(resumed)
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_a_cancel_through_another_replica_stops_the_job(tmp_path: Path, redis_url: str) -> None:
    async def main() -> None:
        a, b = await two_replicas(tmp_path, redis_url)
        try:
            job = await a.submit_job(MODEL, "sample", {"n": 1, "steps": 400}, "test")
            async for event in (await b.get_job(job.id)).events():
                if event.kind == "progress" and event.data["step"] >= 3:
                    break
            answer = await b.cancel_job(job.id)
            assert answer.state is JobState.RUNNING  # it stops at its next step boundary
            with pytest.raises(Cancelled):
                await asyncio.wait_for(job.wait(), 10)
            assert job.step < 400
            ended = await b.get_job(job.id)
            assert ended.state is JobState.CANCELLED
            assert ended.error is not None and isinstance(ended.error, Cancelled)
            finals = await collect(ended.events())
            assert finals[-1].kind == "error" and finals[-1].data["code"] == "cancelled"
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_a_job_whose_replica_stopped_is_reported_failed(tmp_path: Path, redis_url: str) -> None:
    lease_s = 0.5

    async def main() -> None:
        _, b = await two_replicas(tmp_path, redis_url, replica_lease_s=lease_s)
        # the replica that dies: it published a running job and renewed its lease once
        dead = RedisJobStore(
            redis.asyncio.Redis.from_url(redis_url),
            ttl_s=60,
            job_timeout_s=60,
            lease_s=lease_s,
            events_max=64,
        )
        await dead._renew_lease()
        job = Job(f"{MODEL}@1", "sample", {"n": 1, "steps": 10})
        dead.track(job)
        job._emit(JobEvent("accepted", {"job_id": job.id}))
        job._update(JobState.RUNNING, steps=10, step=2)
        job._emit(JobEvent("progress", {"step": 2, "steps": 10}))
        await dead.published(job)
        try:
            assert (await b.get_job(job.id)).state is JobState.RUNNING  # its lease holds
            started = time.monotonic()
            events = await asyncio.wait_for(collect((await b.get_job(job.id)).events()), 10)
            waited = time.monotonic() - started
            assert events[-1].kind == "error" and events[-1].data["code"] == "unavailable"
            assert f"replica {dead.replica} stopped" in events[-1].data["message"]
            assert events[-1].id == 3  # after the two the replica published
            assert waited < 3 * lease_s
            failed = await b.get_job(job.id)
            assert failed.state is JobState.FAILED
            assert failed.error is not None and "stopped" in failed.error.message
        finally:
            await b.close()
            await dead._redis.aclose()

    asyncio.run(main())


def test_a_replica_whose_lease_lapsed_stops_the_job_others_failed(
    tmp_path: Path, redis_url: str
) -> None:
    async def main() -> None:
        a, b = await two_replicas(tmp_path, redis_url, replica_lease_s=30)
        try:
            job = await a.submit_job(MODEL, "sample", {"n": 1, "steps": 400}, "test")
            async for event in (await b.get_job(job.id)).events():
                if event.kind == "progress":
                    break
            owner = a.jobs.store.replica  # type: ignore[attr-defined]
            await redis.asyncio.Redis.from_url(redis_url).delete(f"latentserve:replica:{owner}")
            failed = await b.get_job(job.id)  # the lease is gone: b fails the job
            assert failed.state is JobState.FAILED
            # a, still alive, finds its update refused and stops the job
            with pytest.raises(Cancelled):
                await asyncio.wait_for(job.wait(), 10)
            assert job.step < 400
            after = await b.get_job(job.id)  # the verdict stands
            assert after.state is JobState.FAILED and "stopped" in after.error.message
            finals = await collect(after.events())
            assert finals[-1].kind == "error" and finals[-1].data["code"] == "unavailable"
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_a_jobs_stream_in_redis_stays_bounded(tmp_path: Path, redis_url: str) -> None:
    async def main() -> None:
        a, b = await two_replicas(tmp_path, redis_url, job_events_max=8)
        try:
            job = await a.submit_job(MODEL, "sample", {"n": 1, "steps": 30}, "test")
            await job.wait()
            await a.jobs.published(job)
            length = await redis.asyncio.Redis.from_url(redis_url).xlen(JobKeys.of(job.id).events)
            assert length <= 8
            events = await collect((await b.get_job(job.id)).events())
            assert [e.kind for e in events] == ["accepted", "progress", "result"]
            assert events[1].data["step"] == 30
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_an_unknown_job_is_not_found_through_the_store(tmp_path: Path, redis_url: str) -> None:
    async def main() -> None:
        a, _ = await two_replicas(tmp_path, redis_url)
        try:
            with pytest.raises(JobNotFound):
                await a.get_job("0" * 32)
            with pytest.raises(JobNotFound):
                await a.cancel_job("0" * 32)
        finally:
            await a.close()

    asyncio.run(main())


def test_the_redis_store_needs_its_url() -> None:
    with pytest.raises(ValidationError, match="redis_url"):
        Settings(job_store="redis")


def test_the_memory_store_imports_no_redis() -> None:
    code = (
        "import sys; import latentserve.server.app; "
        "from latentserve.server.engine.job_store import open_job_store; "
        "from latentserve.server.settings import Settings; open_job_store(Settings()); "
        "assert 'redis' not in sys.modules, 'redis imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_replica_that_drains_ends_its_streams_of_other_replicas_jobs(
    tmp_path: Path, redis_url: str
) -> None:
    """Following another replica's job never holds a shutdown: once ``b`` drains, its
    stream of ``a``'s job ends at once, without a final event, while the job runs on."""

    async def main() -> None:
        a, b = await two_replicas(tmp_path, redis_url, replica_lease_s=30.0)
        try:
            job = await a.submit_job(MODEL, "sample", {"n": 1, "steps": 1000}, "test")
            seen: list[JobEvent] = []
            progressing = asyncio.Event()

            async def follow() -> None:
                async for event in (await b.get_job(job.id)).events():
                    seen.append(event)
                    if event.kind == "progress":
                        progressing.set()

            following = asyncio.create_task(follow())
            await asyncio.wait_for(progressing.wait(), 10)
            assert await b.drain(5.0) == 0
            await asyncio.wait_for(following, 5)
            assert seen[-1].kind not in ("result", "error")
            assert not job.state.finished
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_closing_the_store_is_bounded_when_redis_stops_answering(tmp_path: Path) -> None:
    """A Redis that hangs (here: its process stopped) never holds a shutdown: the store's
    close gives up after a lease and the replica exits (its lease expires by itself)."""
    lease_s = 0.5
    with running_redis(require_tool("redis-server"), tmp_path) as url:
        pid = redis.Redis.from_url(url).info("server")["process_id"]

        async def main() -> None:
            store = RedisJobStore(
                redis.asyncio.Redis.from_url(url),
                ttl_s=60,
                job_timeout_s=60,
                lease_s=lease_s,
                events_max=64,
            )
            await store.start(lambda job_id: False)
            os.kill(pid, signal.SIGSTOP)
            try:
                await asyncio.wait_for(store.close(), 10 * lease_s)
            finally:
                os.kill(pid, signal.SIGCONT)

        asyncio.run(main())
