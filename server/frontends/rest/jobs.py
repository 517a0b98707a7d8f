"""``/v1/jobs``: submit, poll, follow (Server-Sent Events) and cancel multi-step work, and
fetch a finished job's images one PNG at a time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import Response, StreamingResponse
from latentserve.server import codecs
from latentserve.server.engine.jobs import Job, JobEvent, JobView
from latentserve.server.frontends.rest.dependencies import PROTOCOL, Service, b64, json_response
from latentserve.server.frontends.rest.errors import error_response
from latentserve.server.frontends.rest.schemas import JobError, JobInfo, JobRequest

router = APIRouter(tags=["jobs"])


def job_info(job: JobView) -> JobInfo:
    result = job.result or {}
    error = job.error
    return JobInfo.model_construct(
        job_id=job.id,
        model=job.model,
        method=job.method,
        state=job.state.value,
        position=job.position,
        step=job.step,
        steps=job.steps,
        params=job.params,
        created_at=job.created,
        preview=b64(job.preview) if job.preview else None,
        seed=result.get("seed", job.params.get("seed")),
        images=b64(result["images"]) if "images" in result else None,
        error=(
            JobError(code=error.code, message=error.message, field=getattr(error, "field", None))
            if error is not None
            else None
        ),
    )


def _sse(event: JobEvent) -> str:
    """One Server-Sent Event: its id, its name and a JSON ``data:`` line (PNGs as base64)."""
    data = {k: b64(v) if k == "images" else v for k, v in event.data.items()}
    payload = json.dumps(data, separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.kind}\ndata: {payload}\n\n"


KEEPALIVE = ": keep-alive\n\n"  # an SSE comment: clients ignore it, idle timers restart


async def event_stream(
    job: JobView, cancel_on_close: bool, keepalive_s: float, after: int = 0
) -> AsyncIterator[str]:
    """The job's events as SSE (resuming after event ``after``), with a keep-alive comment
    whenever ``keepalive_s`` pass without one."""
    events = job.events(after)
    pending: asyncio.Future[JobEvent] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait({pending}, timeout=keepalive_s)
            if not done:
                yield KEEPALIVE
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield _sse(event)
    finally:
        # Nothing may wait before the cancel: a disconnect cancels this stream's scope, and
        # under anyio every later await in it raises again.
        if cancel_on_close and isinstance(job, Job):  # the client went away: free the compute
            job.cancel()
        if pending is not None and not pending.done():
            # ``events`` is running inside that task (awaiting its next event): it cannot be
            # closed from here, but cancelling the task ends it there.
            pending.add_done_callback(_forget)
            pending.cancel()
        else:  # suspended between events (or finished): closed at once
            await events.aclose()


def _forget(task: asyncio.Future[JobEvent]) -> None:
    """Retrieve the outcome of an abandoned ``anext`` so that asyncio logs no
    "exception was never retrieved" for a store error that came with the cancel."""
    if not task.cancelled():
        task.exception()


def sse_response(events: AsyncIterator[str]) -> StreamingResponse:
    # Proxies must pass each event on as it comes, not buffer the stream.
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


@router.post("/v1/jobs", response_model=JobInfo, status_code=202)
async def submit_job(service: Service, body: JobRequest) -> Response:
    params = body.params
    for key in ("image", "mask"):
        if isinstance(params.get(key), str):
            params = params | {key: codecs.decode_base64(params[key], f"params.{key}")}
    job = await service.submit_job(body.model, body.method, params, PROTOCOL)
    return json_response(job_info(job), status_code=202)


@router.get("/v1/jobs/{job_id}", response_model=JobInfo)
async def get_job(service: Service, job_id: str) -> Response:
    return json_response(job_info(await service.get_job(job_id)))


@router.get("/v1/jobs/{job_id}/events")
async def job_events(
    service: Service,
    job_id: str,
    last_event_id: Annotated[
        int | None,
        Header(
            ge=0,
            description="resume a dropped stream: the id of the last event received; the "
            "stream then sends the latest event of each kind since, and what follows",
        ),
    ] = None,
) -> Response:
    """Follow a job's events (SSE); closing this stream does not cancel the job."""
    job = await service.get_job(job_id)
    keepalive_s = service.settings.sse_keepalive_s
    return sse_response(event_stream(job, False, keepalive_s, after=last_event_id or 0))


@router.get(
    "/v1/jobs/{job_id}/images/{index}",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "the PNG"}},
)
async def job_image(service: Service, job_id: str, index: int) -> Response:
    """Image ``index`` of a finished job, as ``image/png``, while the job is retained (what
    the OpenAI Images API's ``response_format=url`` points at)."""
    job = await service.get_job(job_id)
    if job.error is not None:
        raise job.error
    if job.result is None:
        return error_response(409, "not_ready", f"job {job_id} is {job.state.value}: no images yet")
    images = job.result["images"]
    if not 0 <= index < len(images):
        return error_response(
            404, "not_found", f"job {job_id} has {len(images)} image(s), no {index}", "index"
        )
    return Response(images[index], media_type="image/png")


@router.delete("/v1/jobs/{job_id}", response_model=JobInfo)
async def cancel_job(service: Service, job_id: str) -> Response:
    """Cancel a job: it stops at its next step boundary (its state says when)."""
    return json_response(job_info(await service.cancel_job(job_id)))
