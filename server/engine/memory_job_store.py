"""The default job store: jobs live only in the process that admitted them.

A single server needs nothing more: the ``JobManager`` holds its running and retained
jobs itself, so there is nothing to publish and no other replica to ask."""

from __future__ import annotations

from typing import TYPE_CHECKING

from latentserve.server.engine.job_store import CancelHere, JobStore

if TYPE_CHECKING:
    from latentserve.server.engine.jobs import Job, JobView


class MemoryJobStore(JobStore):
    """No replica but this one: every call is a no-op and no other job exists."""

    async def start(self, cancel_here: CancelHere) -> None:
        return None

    def track(self, job: Job) -> None:
        return None

    async def published(self, job: Job) -> None:
        return None

    async def find(self, job_id: str) -> JobView | None:
        return None

    async def cancel(self, job_id: str) -> JobView | None:
        return None

    def stop_following(self) -> None:
        return None

    async def close(self) -> None:
        return None
