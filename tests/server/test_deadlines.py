"""Client deadlines: queued work past its deadline is dropped before it computes, and the
server's own limits end at the client's deadline when that comes first."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers.fakes import EchoGraph, items, sample_params
from helpers.fakes import vae_service as make_service
from latentserve.server.engine import deadlines
from latentserve.server.engine.batcher import Batcher
from latentserve.server.engine.stepping import StepEngine
from latentserve.server.errors import DeadlineExceeded, InvalidArgument, Unavailable
from latentserve.server.metrics import ServerMetrics
from prometheus_client import CollectorRegistry


def drops(metrics: ServerMetrics, model: str, queue: str, reason: str) -> float:
    labels = {"model": model, "queue": queue, "reason": reason}
    return metrics.registry.get_sample_value("latentserve_queue_drops_total", labels) or 0.0


async def with_deadline(timeout_s: float, work) -> object:  # noqa: ANN001 - test helper
    """Run ``work()`` in a task of its own whose request has a client deadline."""

    async def request() -> object:
        deadlines.begin(timeout_s)
        return await work()

    return await asyncio.ensure_future(request())


def one_at_a_time(graph: EchoGraph, metrics: ServerMetrics) -> Batcher:
    """Batches of up to 4 formed at once, one computing at a time."""
    return Batcher(
        graph,
        max_batch_size=4,
        max_queue_delay_ms=0,
        max_queue_size=8,
        max_concurrent_batches=1,
        model="m@1",
        graph="decoder",
        metrics=metrics,
    )


def test_a_queued_request_past_its_deadline_is_dropped_without_computing() -> None:
    graph = EchoGraph()
    graph.gate = threading.Event()  # the first batch computes until the gate opens
    metrics = ServerMetrics(CollectorRegistry())

    async def main() -> None:
        batcher = one_at_a_time(graph, metrics)
        busy = asyncio.ensure_future(batcher.submit(items(0, 4)))
        late = asyncio.ensure_future(with_deadline(0.05, lambda: batcher.submit(items(10, 1))))
        await asyncio.sleep(0.1)  # the late request's deadline passes while it is queued
        assert not late.done()  # nothing cancelled it: only the batcher can drop it
        graph.gate.set()
        await busy
        with pytest.raises(DeadlineExceeded):
            await late
        after = await batcher.submit(items(20, 1))  # the queue goes on serving
        np.testing.assert_array_equal(after["y"], items(20, 1)["x"] * 2)
        await batcher.close()

    asyncio.run(main())
    assert graph.batch_sizes == [4, 1]  # the late request never reached the graph
    assert drops(metrics, "m@1", "decoder", "deadline") == 1


def test_a_request_whose_deadline_already_passed_is_never_queued() -> None:
    graph = EchoGraph()
    metrics = ServerMetrics(CollectorRegistry())

    async def main() -> None:
        batcher = one_at_a_time(graph, metrics)

        async def expired() -> object:
            deadlines.begin(0.0)
            return await batcher.submit(items(0, 1))

        with pytest.raises(DeadlineExceeded):
            await asyncio.ensure_future(expired())
        await batcher.close()

    asyncio.run(main())
    assert graph.batch_sizes == []
    assert drops(metrics, "m@1", "decoder", "deadline") == 1


class _Trajectory:
    """A one-step job that records whether the engine ever asked it for inputs."""

    progress = None
    steps = 1

    def __init__(self) -> None:
        self.done = False
        self.stepped = False

    def inputs(self) -> dict[str, np.ndarray]:
        self.stepped = True
        return {"x": np.zeros((1, 1), np.float32)}

    def advance(self, outputs: dict[str, np.ndarray]) -> None:
        self.done = True


def test_a_waiting_job_past_its_deadline_leaves_the_step_queue_before_its_first_step() -> None:
    metrics = ServerMetrics(CollectorRegistry())

    async def main() -> None:
        gate = asyncio.Event()

        async def step(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            await gate.wait()
            return {"y": inputs["x"]}

        engine = StepEngine(step, model="m@1", max_running=1, metrics=metrics)
        running = _Trajectory()
        first = asyncio.ensure_future(engine.run(running))
        waiting = _Trajectory()
        late = asyncio.ensure_future(with_deadline(0.05, lambda: engine.run(waiting)))
        await asyncio.sleep(0.1)  # its deadline passes while the running job holds the step
        gate.set()
        await first
        with pytest.raises(DeadlineExceeded):
            await late
        assert running.done and not waiting.stepped
        # the engine's loop was started by a job with no deadline; a later one's does not
        # leak into it: a job without a deadline still runs to the end
        third = _Trajectory()
        await with_deadline(30.0, lambda: engine.run(third))
        assert third.done
        await engine.close()

    asyncio.run(main())
    assert drops(metrics, "m@1", "steps", "deadline") == 1


def test_the_clients_deadline_ends_a_wait_before_the_servers_limit() -> None:
    async def wait(limit_s: float) -> None:
        async with deadlines.within(limit_s, "request"):
            await asyncio.sleep(10)

    async def main() -> None:
        with pytest.raises(DeadlineExceeded, match="client's deadline"):
            await with_deadline(0.05, lambda: wait(30.0))
        with pytest.raises(Unavailable, match="request timed out after 0.05s"):
            await with_deadline(30.0, lambda: wait(0.05))

    asyncio.run(main())


def test_a_job_past_its_client_deadline_fails_with_deadline_exceeded(tmp_path: Path) -> None:
    service, graphs = make_service(tmp_path, delay_s=0.5)

    async def main() -> None:
        with pytest.raises(DeadlineExceeded):
            await with_deadline(
                0.05, lambda: service.sample("fake-vae", sample_params(1, 0), "grpc")
            )

    asyncio.run(main())
    labels = {
        "model": "fake-vae@2",
        "method": "sample",
        "protocol": "grpc",
        "status": "deadline_exceeded",
    }
    registry = service.metrics.registry
    assert registry.get_sample_value("latentserve_requests_total", labels) == 1


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "abc", "", "1e9"])
def test_a_bad_timeout_header_is_refused_naming_it(text: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        deadlines.parse_timeout(text)
    assert error.value.field == "X-Request-Timeout"


def test_a_timeout_header_is_seconds() -> None:
    assert deadlines.parse_timeout("2.5") == 2.5
