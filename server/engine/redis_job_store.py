"""The shared job store: jobs of every replica in one Redis (``job_store = "redis"``).

The replica that runs a job publishes it: each change of its state and each event is
written (in order, batched while a write is in flight) by one writer task per job, into
the keys ``redis_job_record`` lays out. Any other replica reads them back for ``GET``,
follows the job's event stream (``XREAD``, resumable by event id) and asks the owner to
cancel it over pub/sub; the owner's step loop stops at its next step boundary.

Each replica holds a lease, a key with a TTL of ``replica_lease_s`` it renews every third
of that. A reader that finds a job queued or running whose owner's lease is gone (the
process was killed, its machine lost) marks it failed, ``replica <id> stopped``, in one
atomic script, so no job is left running forever. Should the owner come back (it was
stalled, not dead), Redis refuses its next update of that job and the owner stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import socket
import uuid
from collections.abc import AsyncIterator

import redis.asyncio as redis
from latentserve.server.engine.job_store import CancelHere, JobStore
from latentserve.server.engine.jobs import Job, JobEvent
from latentserve.server.engine.redis_job_record import (
    CANCEL_CHANNEL,
    FINAL_KINDS,
    PUBLISH_SCRIPT,
    REAP_SCRIPT,
    JobKeys,
    PublishedJob,
    decode_event,
    encode_event,
    error_json,
    lease_key,
    snapshot,
)
from latentserve.server.errors import Unavailable
from latentserve.server.settings import Settings
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

_LOST = (RedisConnectionError, RedisTimeoutError, OSError)  # worth writing again


class RedisJobStore(JobStore):
    def __init__(
        self,
        client: redis.Redis,
        *,
        ttl_s: float,
        job_timeout_s: float,
        lease_s: float,
        events_max: int,
        replica: str | None = None,
    ) -> None:
        self._redis = client
        self._ttl_s = ttl_s
        self._job_timeout_s = job_timeout_s
        self._lease_s = lease_s
        self._events_max = events_max
        self.replica = replica or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._publish = client.register_script(PUBLISH_SCRIPT)
        self._reap = client.register_script(REAP_SCRIPT)
        self._writers: dict[str, _JobWriter] = {}
        self._background: list[asyncio.Task[None]] = []
        self._pubsub: redis.client.PubSub | None = None
        self._stopping = asyncio.Event()  # set: the event streams of others' jobs end

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisJobStore:
        assert settings.redis_url is not None  # the settings refuse redis without it
        return cls(
            redis.Redis.from_url(settings.redis_url),
            ttl_s=settings.job_ttl_s,
            job_timeout_s=settings.job_timeout_s,
            lease_s=settings.replica_lease_s,
            events_max=settings.job_events_max,
        )

    # -- this replica --------------------------------------------------------------------

    async def start(self, cancel_here: CancelHere) -> None:
        try:
            await self._renew_lease()
            self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            await self._pubsub.subscribe(CANCEL_CHANNEL)
        except RedisError as exc:
            raise Unavailable(f"cannot reach the job store (redis_url): {exc}") from exc
        loop = asyncio.get_running_loop()
        self._background = [
            loop.create_task(self._keep_lease()),
            loop.create_task(self._hear_cancels(self._pubsub, cancel_here)),
        ]
        log.info("job store: redis, replica %s", self.replica)

    async def _renew_lease(self) -> None:
        await self._redis.set(lease_key(self.replica), b"1", px=max(1, int(self._lease_s * 1000)))

    async def _keep_lease(self) -> None:
        while True:
            await asyncio.sleep(self._lease_s / 3)
            try:
                await self._renew_lease()
            except RedisError as exc:
                log.warning("job store: cannot renew replica %s's lease: %s", self.replica, exc)

    async def _hear_cancels(self, pubsub: redis.client.PubSub, cancel_here: CancelHere) -> None:
        while True:
            try:
                if not pubsub.subscribed:
                    await pubsub.subscribe(CANCEL_CHANNEL)
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        cancel_here(message["data"].decode())
            except RedisError as exc:  # the connection dropped: subscribe again
                log.warning("job store: cancel channel lost (%s); subscribing again", exc)
            await asyncio.sleep(min(1.0, self._lease_s / 3))

    def track(self, job: Job) -> None:
        writer = _JobWriter(self, job)
        self._writers[job.id] = writer
        writer.task.add_done_callback(lambda _: self._writers.pop(job.id, None))

    async def published(self, job: Job) -> None:
        writer = self._writers.get(job.id)
        if writer is None:
            return
        try:  # bounded: a Redis that does not answer delays the answer, never holds it
            await asyncio.wait_for(writer.idle.wait(), self._lease_s)
        except TimeoutError:
            log.warning("job %s: not yet published after %gs", job.id, self._lease_s)

    async def write(self, job: Job, events: list[JobEvent]) -> bool:
        """Publish ``job``'s state and its ``events`` (in order) in one step; False when
        Redis refused it: another replica already failed the job."""
        fields = snapshot(job, self.replica)
        entries = []
        for event in events:
            encoded = encode_event(event)
            entries.append([str(event.id), event.kind, encoded["data"]])
            if event.kind == "accepted":  # a stream resumed from the start begins with it
                fields["accepted"] = encoded["data"]
        kinds = {event.kind for event in events}
        preview = (job.preview or []) if "preview" in kinds else []
        images = ((job.result or {}).get("images") or []) if "result" in kinds else []
        ttl = self._ttl_s if job.state.finished else self._ttl_s + self._job_timeout_s
        args = [math.ceil(ttl), self._events_max, json.dumps(fields), json.dumps(entries)]
        written = await self._publish(
            keys=list(JobKeys.of(job.id).all), args=[*args, len(preview), *preview, *images]
        )
        return bool(written)

    def stop_following(self) -> None:
        self._stopping.set()

    async def close(self) -> None:
        self.stop_following()
        writers = [w.task for w in self._writers.values()]
        if writers:  # the jobs ended (drained or cancelled): their last events go out
            _, late = await asyncio.wait(writers, timeout=max(1.0, self._lease_s))
            for task in late:
                task.cancel()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        try:  # a Redis that does not answer never holds the shutdown: the lease expires
            async with asyncio.timeout(max(1.0, self._lease_s)):
                await self._disconnect()
        except TimeoutError:
            log.warning("job store: redis did not answer the close; leaving it to expire")

    async def _disconnect(self) -> None:
        """Give up the lease (the others need not wait for it to expire), then hang up."""
        with contextlib.suppress(RedisError):
            await self._redis.delete(lease_key(self.replica))
        if self._pubsub is not None:
            with contextlib.suppress(RedisError):
                await self._pubsub.aclose()
        await self._redis.aclose()

    # -- other replicas' jobs ------------------------------------------------------------

    async def find(self, job_id: str) -> PublishedJob | None:
        keys = JobKeys.of(job_id)
        try:
            fields = await self._redis.hgetall(keys.job)
            if not fields:
                return None
            if await self._reap_if_orphaned(job_id, fields):
                fields = await self._redis.hgetall(keys.job)
            pipe = self._redis.pipeline(transaction=False)
            pipe.lrange(keys.preview, 0, -1)
            pipe.lrange(keys.images, 0, -1)
            preview, images = await pipe.execute()
        except RedisError as exc:
            raise Unavailable(f"the job store cannot be reached: {exc}") from exc
        return PublishedJob.read(job_id, fields, preview, images, self._events)

    async def cancel(self, job_id: str) -> PublishedJob | None:
        job = await self.find(job_id)
        if job is not None and not job.state.finished:
            try:
                await self._redis.publish(CANCEL_CHANNEL, job_id)
            except RedisError as exc:
                raise Unavailable(f"the job store cannot be reached: {exc}") from exc
        return job

    async def _reap_if_orphaned(self, job_id: str, fields: dict[bytes, bytes]) -> bool:
        """Fail the job if it is unfinished and its owner's lease is gone; True if so."""
        state = fields.get(b"state", b"").decode()
        if state not in ("queued", "running"):
            return False
        owner = fields[b"owner"].decode()
        if await self._redis.exists(lease_key(owner)):
            return False
        message = f"replica {owner} stopped before the job finished"
        error = Unavailable(message)
        data = encode_event(
            JobEvent("error", {"code": error.code, "message": message, "field": None})
        )
        reaped = await self._reap(
            keys=[*JobKeys.of(job_id).all, lease_key(owner)],
            args=[owner, error_json(error), data["data"], math.ceil(self._ttl_s), self._events_max],
        )
        if reaped:
            log.warning("job %s failed: %s", job_id, message)
        return bool(reaped)

    async def _events(self, job_id: str, after: int) -> AsyncIterator[JobEvent]:
        """What a job's events stream says: the latest event of each kind after ``after``,
        then the live ones up to the final one (the same as a held job's ``events``)."""
        keys = JobKeys.of(job_id)
        entries = await self._redis.xrange(keys.events, min=f"{after + 1}-0")
        latest: dict[str, JobEvent] = {}
        for entry_id, fields in entries:
            event = decode_event(entry_id, fields)
            latest.pop(event.kind, None)
            latest[event.kind] = event
        if after == 0 and "accepted" not in latest:  # trimmed off a long stream
            accepted = await self._redis.hget(keys.job, "accepted")
            if accepted:
                latest["accepted"] = decode_event(b"1-0", {b"kind": b"accepted", b"data": accepted})
        last = after
        for event in sorted(latest.values(), key=lambda e: e.id):
            yield event
            last = event.id
            if event.kind in FINAL_KINDS:
                return
        block_ms = max(50, int(self._lease_s * 500))
        while True:
            reply = await self._read_unless_stopping(keys.events, last, block_ms)
            if reply is None:
                return  # this replica is shutting down: the client resumes elsewhere
            if not reply:  # quiet for a while: is anyone still running it?
                fields = await self._redis.hgetall(keys.job)
                if not fields:
                    return  # expired
                await self._reap_if_orphaned(job_id, fields)
                continue
            for entry_id, fields in reply[0][1]:
                event = decode_event(entry_id, fields)
                yield event
                last = event.id
                if event.kind in FINAL_KINDS:
                    return

    async def _read_unless_stopping(self, stream: str, last: int, block_ms: int) -> list | None:
        """``XREAD`` of the entries after ``last`` (empty when none came within
        ``block_ms``), or None once ``stop_following`` was called."""
        if self._stopping.is_set():
            return None
        read = asyncio.ensure_future(self._redis.xread({stream: f"{last}-0"}, block=block_ms))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({read, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # whoever is cancelled (the stream's caller too) leaves no task behind
            stopping.cancel()
            if not read.done():
                read.cancel()  # redis-py drops the connection of a cancelled command
                await asyncio.gather(read, return_exceptions=True)
        return read.result() if not read.cancelled() else None


class _JobWriter:
    """Publishes one job's changes in order: each write takes all that piled up since the
    last, so a slow Redis costs batching, not a queue per event."""

    def __init__(self, store: RedisJobStore, job: Job) -> None:
        self._store = store
        self._job = job
        self._pending: list[JobEvent] = []
        self._changed = asyncio.Event()
        self._changed.set()  # the job's first state
        self.idle = asyncio.Event()  # set while everything so far is written
        job.on_change = self._on_change
        self.task = asyncio.get_running_loop().create_task(self._run())

    def _on_change(self, event: JobEvent | None) -> None:
        if event is not None:
            self._pending.append(event)
        self.idle.clear()
        self._changed.set()

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            await self._changed.wait()
            self._changed.clear()
            events, self._pending = self._pending, []
            try:
                written = await self._store.write(self._job, events)
                backoff = 0.05
            except _LOST as exc:  # Redis unreachable: keep them, write again after a pause
                log.warning("job %s: cannot publish to the job store: %s", self._job.id, exc)
                self._pending = events + self._pending
                self._changed.set()
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)
                continue
            except RedisError as exc:
                log.warning("job %s: the job store refused an update: %s", self._job.id, exc)
                written = True
            if not written:  # this replica's lease lapsed and a reader failed the job
                log.error("job %s was failed by another replica: stopping it", self._job.id)
                self.idle.set()
                self._job.on_change = None
                self._job.cancel()
                return
            if not self._changed.is_set():
                self.idle.set()
            if any(event.kind in FINAL_KINDS for event in events):
                return
