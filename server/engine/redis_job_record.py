"""How a job is laid out in Redis, and the job another replica published, read back.

Per job (all keys expire with the job's TTL):

- ``latentserve:job:<id>``: a hash of its state (model, method, params, owner, state,
  position, step, steps, seed, error, the ``accepted`` event);
- ``latentserve:job:<id>:events``: a Redis Stream of its events, entry id ``<event id>-0``,
  so a stream resumed by ``Last-Event-ID`` through any replica reads on from that id;
- ``latentserve:job:<id>:preview`` and ``…:images``: lists of the latest preview's and the
  result's PNGs.

``latentserve:replica:<id>`` is a replica's lease (a key with a short TTL it renews);
``latentserve:cancel`` the channel on which replicas ask each other to cancel a job.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from latentserve.server.engine.jobs import Cancelled, JobEvent, JobState
from latentserve.server.errors import (
    DeadlineExceeded,
    InvalidArgument,
    ServingError,
    Unavailable,
    Unsupported,
)

if TYPE_CHECKING:
    from latentserve.server.engine.jobs import Job

PREFIX = "latentserve:"
CANCEL_CHANNEL = PREFIX + "cancel"
FINAL_KINDS = ("result", "error")


def lease_key(replica: str) -> str:
    return f"{PREFIX}replica:{replica}"


@dataclass(frozen=True)
class JobKeys:
    job: str
    events: str
    preview: str
    images: str

    @classmethod
    def of(cls, job_id: str) -> JobKeys:
        base = f"{PREFIX}job:{job_id}"
        return cls(base, f"{base}:events", f"{base}:preview", f"{base}:images")

    @property
    def all(self) -> tuple[str, str, str, str]:
        return (self.job, self.events, self.preview, self.images)


def encode_event(event: JobEvent) -> dict[str, str]:
    """A stream entry's fields: the kind, and the data as JSON (PNGs as base64)."""
    return {"kind": event.kind, "data": _dumps(event.data)}


def decode_event(entry_id: bytes, fields: dict[bytes, bytes]) -> JobEvent:
    event_id = int(entry_id.split(b"-", 1)[0])
    return JobEvent(fields[b"kind"].decode(), _loads(fields[b"data"]), event_id)


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(
        {
            k: [base64.b64encode(p).decode() for p in v] if k == "images" else v
            for k, v in data.items()
        },
        separators=(",", ":"),
    )


def _loads(raw: bytes) -> dict[str, Any]:
    data = json.loads(raw)
    if "images" in data:
        data["images"] = [base64.b64decode(p) for p in data["images"]]
    return data


def snapshot(job: Job, owner: str) -> dict[str, str]:
    """The hash of ``job`` as it is now."""
    error = job.error
    fields = {
        "model": job.model,
        "method": job.method,
        "params": json.dumps(job.params),
        "created": repr(job.created),
        "owner": owner,
        "state": job.state.value,
        "position": "" if job.position is None else str(job.position),
        "step": str(job.step),
        "steps": str(job.steps),
        "error": "" if error is None else error_json(error),
    }
    if job.result is not None and job.result.get("seed") is not None:
        fields["seed"] = str(job.result["seed"])
    return fields


def error_json(error: ServingError) -> str:
    field = getattr(error, "field", None)
    return json.dumps({"code": error.code, "message": error.message, "field": field})


# The error kinds a finished job can report, by wire code, so a job read back from Redis
# maps to the same HTTP and gRPC status as where it ran.
_ERRORS: dict[str, type[ServingError]] = {
    cls.code: cls
    for cls in (Cancelled, DeadlineExceeded, InvalidArgument, Unavailable, Unsupported)
}


def error_from(raw: str) -> ServingError:
    """The error a job reported, rebuilt without its constructor (the message is final)."""
    data = json.loads(raw)
    error = ServingError.__new__(_ERRORS.get(data["code"], ServingError))
    Exception.__init__(error, data["message"])
    error.message = data["message"]
    error.field = data.get("field")  # type: ignore[attr-defined]
    return error


Events = Callable[[str, int], AsyncIterator[JobEvent]]


@dataclass
class PublishedJob:
    """A job another replica runs or ran, as it published it (see ``JobView``)."""

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
    owner: str
    _events: Events

    @classmethod
    def read(
        cls,
        job_id: str,
        fields: dict[bytes, bytes],
        preview: list[bytes],
        images: list[bytes],
        events: Events,
    ) -> PublishedJob:
        f = {k.decode(): v.decode() for k, v in fields.items()}
        state = JobState(f["state"])
        seed = int(f["seed"]) if f.get("seed") else None
        done = state is JobState.DONE
        return cls(
            id=job_id,
            model=f["model"],
            method=f["method"],
            state=state,
            position=int(f["position"]) if f.get("position") else None,
            step=int(f["step"]),
            steps=int(f["steps"]),
            params=json.loads(f["params"]),
            created=float(f["created"]),
            preview=preview or None,
            result={"model": f["model"], "seed": seed, "images": images} if done else None,
            error=error_from(f["error"]) if f.get("error") else None,
            owner=f["owner"],
            _events=events,
        )

    def events(self, after: int = 0) -> AsyncIterator[JobEvent]:
        return self._events(self.id, after)


# The owner's write of what changed: the hash's fields, the new events (any already in the
# stream skipped, so a write retried after a lost reply adds nothing twice), the latest
# preview's and the result's PNGs, the TTLs. Refused (0) once the job is finished in Redis:
# a reader failed it because this replica's lease had lapsed, and that verdict stands.
# KEYS: the job's four keys. ARGV: TTL seconds, the stream's length cap, the fields (JSON),
# the events (JSON [[id, kind, data], ...]), the preview's PNG count, the PNGs (preview's
# first, then the result's).
PUBLISH_SCRIPT = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'done' or state == 'failed' or state == 'cancelled' then return 0 end
for field, value in pairs(cjson.decode(ARGV[3])) do redis.call('HSET', KEYS[1], field, value) end
local last = 0
local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #newest > 0 then last = tonumber(string.match(newest[1][1], '^(%d+)')) end
for _, e in ipairs(cjson.decode(ARGV[4])) do
  if tonumber(e[1]) > last then
    redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], e[1] .. '-0', 'kind', e[2], 'data', e[3])
  end
end
local previews = tonumber(ARGV[5])
if previews > 0 then
  redis.call('DEL', KEYS[3])
  for i = 6, 5 + previews do redis.call('RPUSH', KEYS[3], ARGV[i]) end
end
for i = 6 + previews, #ARGV do redis.call('RPUSH', KEYS[4], ARGV[i]) end
for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[1]) end
return 1
"""

# Run by a reader that found a job queued or running whose replica's lease is gone: fail it
# with ``ARGV[2]`` and append that error event after the last one, in one step, so two
# readers never both do it and the owner, were it back, cannot interleave.
# KEYS: the job's four keys, the owner's lease. ARGV: owner, error JSON, error event data,
# TTL seconds, the stream's length cap.
REAP_SCRIPT = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'running' then return 0 end
if redis.call('EXISTS', KEYS[5]) == 1 then return 0 end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local id = 1
if #last > 0 then id = tonumber(string.match(last[1][1], '^(%d+)')) + 1 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], id .. '-0', 'kind', 'error', 'data', ARGV[3])
redis.call('HSET', KEYS[1], 'state', 'failed', 'position', '', 'error', ARGV[2])
for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[4]) end
return 1
"""
