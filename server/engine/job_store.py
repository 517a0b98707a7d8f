"""Where jobs are found by id beyond this process: the interface and its choice.

``job_store = "memory"`` (the default) keeps jobs in the process that admitted them, as a
single server needs. ``job_store = "redis"`` shares them between replicas behind a load
balancer: the replica that runs a job publishes its state and events, any replica answers
``GET``, the event streams and ``DELETE`` for it, and a job whose replica stopped is
reported failed. The ``JobManager`` always looks at the jobs it holds first; the store
is asked only for the others.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from latentserve.server.engine.jobs import Job, JobView
    from latentserve.server.settings import Settings

#: Cancels a job running in this process by its id; False when none runs here.
CancelHere = Callable[[str], bool]


class JobStore(ABC):
    """The jobs of other replicas, and the publishing of this replica's jobs to them."""

    @abstractmethod
    async def start(self, cancel_here: CancelHere) -> None:
        """Connect; cancels other replicas ask for are handed to ``cancel_here``."""

    @abstractmethod
    def track(self, job: Job) -> None:
        """Publish ``job`` (admitted here, addressed by its id) from now until it ends."""

    @abstractmethod
    async def published(self, job: Job) -> None:
        """Return once what ``job`` did so far is published."""

    @abstractmethod
    async def find(self, job_id: str) -> JobView | None:
        """A job not held here, or None where the store knows of none."""

    @abstractmethod
    async def cancel(self, job_id: str) -> JobView | None:
        """Ask the replica running ``job_id`` to cancel it; the job as it is now."""

    @abstractmethod
    def stop_following(self) -> None:
        """End the event streams of jobs other replicas run (this server is shutting
        down; their clients resume through another replica by event id)."""

    @abstractmethod
    async def close(self) -> None:
        """Publish what is left of the tracked jobs, then disconnect."""


def open_job_store(settings: Settings) -> JobStore:
    """The store ``settings.job_store`` names; Redis is imported only when chosen."""
    if settings.job_store == "redis":
        from latentserve.server.engine.redis_job_store import RedisJobStore

        return RedisJobStore.from_settings(settings)
    from latentserve.server.engine.memory_job_store import MemoryJobStore

    return MemoryJobStore()
