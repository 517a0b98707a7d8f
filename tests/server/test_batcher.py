"""The dynamic batcher with fake graphs: limits, splitting, failures, keys, metrics."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from helpers.fakes import EchoGraph, items
from latentserve.server.engine.batcher import Batcher, BatchFailed
from latentserve.server.errors import Overloaded, Unavailable
from latentserve.server.metrics import ServerMetrics
from prometheus_client import CollectorRegistry


def make(graph: object, **kwargs: float) -> Batcher:
    options = {"max_batch_size": 4, "max_queue_delay_ms": 5.0, "max_queue_size": 64} | kwargs
    return Batcher(graph, **options)


def test_results_match_inputs_and_max_batch_size_is_respected() -> None:
    graph = EchoGraph()

    async def main() -> list[dict[str, np.ndarray]]:
        batcher = make(graph, max_batch_size=4, max_queue_delay_ms=20)
        out = await asyncio.gather(*(batcher.submit(items(10 * i, 3)) for i in range(10)))
        await batcher.close()
        return out

    results = asyncio.run(main())
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result["y"], items(10 * i, 3)["x"] * 2)
    assert max(graph.batch_sizes) <= 4
    assert sum(graph.batch_sizes) == 30
    assert len(graph.batch_sizes) < 30  # requests really were batched together


def test_a_large_request_is_split_across_batches_in_order() -> None:
    graph = EchoGraph()

    async def main() -> dict[str, np.ndarray]:
        batcher = make(graph, max_batch_size=4, max_queue_delay_ms=0)
        try:
            return await batcher.submit(items(0, 10))
        finally:
            await batcher.close()

    result = asyncio.run(main())
    np.testing.assert_array_equal(result["y"], items(0, 10)["x"] * 2)
    assert graph.batch_sizes == [4, 4, 2]


def test_requests_wait_up_to_the_queue_delay_to_share_a_batch() -> None:
    graph = EchoGraph()

    async def main() -> None:
        # The window never ends within the test: the second request, which fills the
        # batch, is the gate that lets the first one go; no timing decides the outcome.
        batcher = make(graph, max_batch_size=2, max_queue_delay_ms=600_000)
        first = asyncio.ensure_future(batcher.submit(items(0, 1)))
        for _ in range(20):  # the worker has every chance to run the first one alone
            await asyncio.sleep(0)
        assert not first.done() and not graph.entered.is_set()
        second = asyncio.ensure_future(batcher.submit(items(1, 1)))
        await asyncio.wait_for(asyncio.gather(first, second), 10)
        await batcher.close()

    asyncio.run(main())
    assert graph.batch_sizes == [2]


def test_full_queue_refuses_with_overloaded_and_recovers() -> None:
    graph = EchoGraph()
    graph.gate = threading.Event()

    async def main() -> None:
        batcher = make(graph, max_batch_size=1, max_queue_delay_ms=0, max_queue_size=2)
        running = asyncio.ensure_future(batcher.submit(items(0, 1)))
        await asyncio.to_thread(graph.entered.wait, 10)  # the first batch is held inside
        queued = [asyncio.ensure_future(batcher.submit(items(i, 1))) for i in (1, 2)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(items(3, 1))
        assert refused.value.retry_after_s >= 1
        graph.gate.set()
        done = await asyncio.gather(running, *queued)
        assert [float(r["y"][0, 0]) for r in done] == [0.0, 2.0, 4.0]
        after = await batcher.submit(items(5, 1))  # the queue drained: accepted again
        assert float(after["y"][0, 0]) == 10.0
        await batcher.close()

    asyncio.run(main())


class PoisonEcho(EchoGraph):
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if np.any(inputs["x"] < 0):
            raise RuntimeError("negative input")
        return super().run(inputs)


def test_a_failing_batch_fails_only_its_own_requests() -> None:
    graph = PoisonEcho()

    async def main() -> list[object]:
        batcher = make(graph, max_batch_size=1, max_queue_delay_ms=0)
        requests = [items(1, 1), {"x": np.array([[-1.0]], np.float32)}, items(2, 1)]
        out = await asyncio.gather(*(batcher.submit(r) for r in requests), return_exceptions=True)
        await batcher.close()
        return out

    good, bad, good2 = asyncio.run(main())
    assert isinstance(bad, BatchFailed) and "negative input" not in str(bad)  # log only
    assert float(good["y"][0, 0]) == 2.0 and float(good2["y"][0, 0]) == 4.0


class DropsOne(EchoGraph):
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": super().run(inputs)["y"][:-1]}


def test_a_batch_must_return_one_output_per_input() -> None:
    async def main() -> None:
        batcher = make(DropsOne(), max_queue_delay_ms=0)
        with pytest.raises(BatchFailed, match="batch of 3"):
            await batcher.submit(items(0, 3))
        await batcher.close()

    asyncio.run(main())


def test_incompatible_requests_never_share_a_batch() -> None:
    graph = EchoGraph()

    async def main() -> list[dict[str, np.ndarray]]:
        batcher = make(graph, max_batch_size=16, max_queue_delay_ms=50)
        wide = {"x": np.ones((2, 3), np.float32)}
        out = await asyncio.gather(
            batcher.submit(items(0, 2)), batcher.submit(wide), batcher.submit(items(5, 1))
        )
        await batcher.close()
        return out

    narrow, wide, narrow2 = asyncio.run(main())
    assert wide["y"].shape == (2, 3) and narrow["y"].shape == (2, 1)
    assert float(narrow2["y"][0, 0]) == 10.0
    assert sorted(graph.batch_sizes) == [2, 3]  # the two narrow requests together, wide alone


def test_a_cancelled_request_is_not_computed() -> None:
    graph = EchoGraph()
    graph.gate = threading.Event()

    async def main() -> None:
        batcher = make(graph, max_batch_size=1, max_queue_delay_ms=0)
        first = asyncio.ensure_future(batcher.submit(items(0, 1)))
        await asyncio.to_thread(graph.entered.wait, 10)
        abandoned = asyncio.ensure_future(batcher.submit(items(1, 5)))
        await asyncio.sleep(0)
        abandoned.cancel()
        graph.gate.set()
        await first
        await batcher.submit(items(2, 1))
        await batcher.close()

    asyncio.run(main())
    assert graph.batch_sizes == [1, 1]


def test_close_fails_queued_requests_and_refuses_new_ones() -> None:
    graph = EchoGraph()
    graph.gate = threading.Event()

    async def main() -> None:
        batcher = make(graph, max_batch_size=1, max_queue_delay_ms=0)
        running = asyncio.ensure_future(batcher.submit(items(0, 1)))
        await asyncio.to_thread(graph.entered.wait, 10)
        queued = asyncio.ensure_future(batcher.submit(items(1, 1)))
        await asyncio.sleep(0)
        closing = asyncio.ensure_future(batcher.close())
        await asyncio.sleep(0)  # close() runs up to waiting for the held batch
        graph.gate.set()
        await closing
        with pytest.raises(Unavailable):
            await queued
        with pytest.raises(Unavailable):
            await batcher.submit(items(2, 1))
        running.cancel()

    asyncio.run(main())


def test_retry_after_grows_with_the_queue() -> None:
    graph = EchoGraph()
    graph.gate = threading.Event()

    async def main() -> list[int]:
        batcher = make(graph, max_batch_size=1, max_queue_delay_ms=0, max_queue_size=400)
        running = asyncio.ensure_future(batcher.submit(items(0, 1)))
        await asyncio.to_thread(graph.entered.wait, 10)  # the first batch is held inside
        hints = [batcher.retry_after_s()]
        queued = []
        for start in range(1, 401, 100):
            queued += [
                asyncio.ensure_future(batcher.submit(items(i, 1)))
                for i in range(start, start + 100)
            ]
            await asyncio.sleep(0)
            hints.append(batcher.retry_after_s())
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(items(999, 1))
        hints.append(refused.value.retry_after_s)
        graph.gate.set()
        await asyncio.gather(running, *queued)
        await batcher.close()
        return hints

    hints = asyncio.run(main())
    assert hints == sorted(hints) and hints[0] == 1
    assert hints[-1] > hints[1] > hints[0]  # a longer queue: a longer wait advised


def test_batches_are_measured() -> None:
    metrics = ServerMetrics(CollectorRegistry())

    async def main() -> None:
        batcher = Batcher(
            EchoGraph(),
            max_batch_size=8,
            max_queue_delay_ms=20,
            max_queue_size=8,
            model="m@1",
            graph="decoder",
            metrics=metrics,
        )
        await asyncio.gather(*(batcher.submit(items(i, 2)) for i in range(3)))
        await batcher.close()

    asyncio.run(main())
    labels = {"model": "m@1", "graph": "decoder"}
    ran = labels | {"model_instance": "0"}
    registry = metrics.registry
    assert registry.get_sample_value("latentserve_batch_items_count", ran) == 1
    assert registry.get_sample_value("latentserve_batch_items_sum", ran) == 6
    assert registry.get_sample_value("latentserve_queue_wait_seconds_count", labels) == 3
    assert registry.get_sample_value("latentserve_batch_compute_seconds_count", ran) == 1
