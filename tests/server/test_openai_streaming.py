"""The OpenAI Images stream over a real job: which previews become partial images, and a
failure as the error event the SDK raises."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import numpy as np
from latentserve.server.engine.jobs import JobManager, Progress
from latentserve.server.errors import InvalidArgument
from latentserve.server.frontends.openai.streaming import image_events
from latentserve.server.metrics import ServerMetrics
from prometheus_client import CollectorRegistry


def parsed(events: list[str]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for text in events:
        kind, data = text.strip().split("\n")
        out.append((kind.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def stream(steps: int, partial_images: int, fail: bool = False) -> list[tuple[str, dict]]:
    """The events of a job that makes ``steps`` steps, a preview at each (the preview's
    "PNG" names its step), and one image (or fails at its last step)."""

    async def render(images: np.ndarray) -> list[bytes]:
        return [f"step {int(images[0])}".encode()]

    async def work(progress: Progress) -> dict[str, Any]:
        for step in range(1, steps + 1):
            progress.step(step, steps)
            if step < steps:
                progress.preview(step, asyncio.sleep(0, np.array([step])))
        await progress.flush()
        if fail:
            raise InvalidArgument("steps", "too many for this test")
        return {"model": "m@1", "seed": 0, "images": [b"final"]}

    async def main() -> list[str]:
        manager = JobManager(
            ServerMetrics(CollectorRegistry()), max_jobs=2, ttl_s=60, max_finished=2
        )
        job = manager.submit("m@1", "text_to_image", {}, work, render, deadline_s=60, retain=False)
        return [event async for event in image_events(job, "image_edit", partial_images, "8x8")]

    return parsed(asyncio.run(main()))


def b64_text(data: dict) -> str:
    return base64.b64decode(data["b64_json"]).decode()


def test_partial_images_are_spread_over_the_steps() -> None:
    events = stream(steps=8, partial_images=3)
    kinds = [kind for kind, _ in events]
    assert kinds == ["image_edit.partial_image"] * 3 + ["image_edit.completed"]
    assert [b64_text(data) for _, data in events] == ["step 2", "step 4", "step 6", "final"]
    assert [data["partial_image_index"] for _, data in events[:3]] == [0, 1, 2]
    assert all(data["type"] == kind and data["size"] == "8x8" for kind, data in events)
    # none asked for: none sent, though the job made previews
    assert [kind for kind, _ in stream(steps=8, partial_images=0)] == ["image_edit.completed"]


def test_a_failure_is_an_error_event_in_the_apis_shape() -> None:
    events = stream(steps=3, partial_images=1, fail=True)
    kind, data = events[-1]
    assert kind == "error" and data["type"] == "error"
    assert data["error"] == {
        "message": "steps: too many for this test",
        "type": "invalid_request_error",
        "param": "steps",
        "code": "invalid_argument",
    }
