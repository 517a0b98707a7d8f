"""``stream: true``: a job's events as the OpenAI Images API's Server-Sent Events.

``<prefix>.partial_image`` for up to ``partial_images`` of the job's previews, spread
evenly over its steps, then ``<prefix>.completed`` per image; the prefix is
``image_generation`` or ``image_edit``. A failure is an event whose data holds ``error``
(the SDK raises it). Closing the stream cancels the job.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse
from latentserve.server import codecs
from latentserve.server.engine.jobs import Job
from latentserve.server.errors import ServingError
from latentserve.server.frontends.openai.errors import error_json


def _sse(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _image(kind: str, png: bytes, size: str, **fields: Any) -> str:
    data = {
        "type": kind,
        "b64_json": codecs.encode_base64(png),
        "created_at": int(time.time()),
        "size": size,
        "output_format": "png",
        "background": "opaque",
        "quality": "auto",
        **fields,
    }
    return _sse(kind, data)


def _due(step: int, steps: int, sent: int, wanted: int) -> bool:
    """Whether the preview at ``step`` is the next of ``wanted`` evenly spaced ones."""
    return sent < wanted and steps > 0 and step * (wanted + 1) >= (sent + 1) * steps


async def image_events(job: Job, prefix: str, partial_images: int, size: str) -> AsyncIterator[str]:
    steps = sent = 0
    try:
        async for event in job.events():
            if event.kind == "progress":
                steps = event.data["steps"]
            elif event.kind == "preview" and _due(event.data["step"], steps, sent, partial_images):
                for png in event.data["images"]:
                    yield _image(f"{prefix}.partial_image", png, size, partial_image_index=sent)
                sent += 1
            elif event.kind == "result":
                for png in event.data["images"]:
                    yield _image(f"{prefix}.completed", png, size)
            elif event.kind == "error":
                error = job.error or ServingError(event.data["message"])
                yield _sse("error", {"type": "error", **error_json(error)})
    finally:
        job.cancel()  # the client went away (or the job ended: then this does nothing)


def sse_response(events: AsyncIterator[str]) -> StreamingResponse:
    # Proxies must pass each event on as it comes, not buffer the stream.
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)
