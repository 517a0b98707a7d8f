"""Concurrent batches: overlap when allowed, never past the limit, results still exact."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from helpers.fakes import items
from latentserve.server.engine.batcher import Batcher, BatchFailed
from latentserve.server.errors import Unavailable


class SlowProbe:
    """A slow echo graph that records how many of its runs overlap in time.

    ``delays`` maps an item's value to how long a batch holding it sleeps, so a test can
    make an earlier batch finish after a later one.
    """

    backend = "fake"
    providers = ["FakeProvider"]

    def __init__(self, delay_s: float = 0.05, delays: dict[float, float] | None = None) -> None:
        self.delay_s = delay_s
        self.delays = delays or {}
        self.barrier: threading.Barrier | None = None
        self.gate: threading.Event | None = None
        self.lock = threading.Condition()
        self.active = 0
        self.max_active = 0
        self.batches: list[list[float]] = []  # in the order they finished
        self.threads: set[str] = set()

    def wait_until_active(self, runs: int, timeout: float = 10.0) -> None:
        """Block until ``runs`` batches are inside the graph at once."""
        with self.lock:
            assert self.lock.wait_for(lambda: self.active >= runs, timeout), self.active

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.threads.add(threading.current_thread().name)
            self.lock.notify_all()
        try:
            if self.gate is not None:
                self.gate.wait(5)
            if self.barrier is not None:
                self.barrier.wait()  # breaks (and fails the batch) unless runs overlap
            values = [float(v) for v in x[:, 0]]
            time.sleep(max([self.delays.get(v, self.delay_s) for v in values]))
            if any(v < 0 for v in values):
                raise RuntimeError("negative input")
            with self.lock:
                self.batches.append(values)
            return {"y": x * 2}
        finally:
            with self.lock:
                self.active -= 1


def make(graph: SlowProbe, **kwargs: float) -> Batcher:
    options = {"max_batch_size": 1, "max_queue_delay_ms": 0.0, "max_queue_size": 64} | kwargs
    return Batcher(graph, **options)


def test_two_batches_overlap_when_allowed() -> None:
    graph = SlowProbe(delay_s=0.0)
    graph.barrier = threading.Barrier(2, timeout=5)

    async def main() -> list[dict[str, np.ndarray]]:
        batcher = make(graph, max_concurrent_batches=2)
        try:
            return await asyncio.gather(batcher.submit(items(1, 1)), batcher.submit(items(2, 1)))
        finally:
            await batcher.close()

    first, second = asyncio.run(main())  # a barrier of two passes only if both runs overlap
    assert float(first["y"][0, 0]) == 2.0 and float(second["y"][0, 0]) == 4.0
    assert graph.max_active == 2 and len(graph.threads) == 2


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_never_more_batches_at_once_than_the_limit(limit: int) -> None:
    graph = SlowProbe(delay_s=0.0)
    # Runs pass in groups of ``limit``: a group passes only if ``limit`` runs overlap, so
    # the limit is reached however slowly threads start; max_active catches any excess.
    graph.barrier = threading.Barrier(limit, timeout=30)

    async def main() -> list[dict[str, np.ndarray]]:
        batcher = make(graph, max_concurrent_batches=limit)
        try:
            return await asyncio.gather(*(batcher.submit(items(i, 1)) for i in range(12)))
        finally:
            await batcher.close()

    results = asyncio.run(main())
    assert [float(r["y"][0, 0]) for r in results] == [2.0 * i for i in range(12)]
    assert graph.max_active == limit  # reached, never exceeded
    assert len(graph.batches) == 12


def test_one_batch_at_a_time_by_default() -> None:
    graph = SlowProbe(delay_s=0.0)
    graph.barrier = threading.Barrier(2, timeout=0.3)

    async def main() -> list[object]:
        batcher = Batcher(graph, max_batch_size=1, max_queue_delay_ms=0, max_queue_size=8)
        try:
            jobs = (batcher.submit(items(1, 1)), batcher.submit(items(2, 1)))
            return await asyncio.gather(*jobs, return_exceptions=True)
        finally:
            await batcher.close()

    results = asyncio.run(main())
    assert all(isinstance(r, BatchFailed) for r in results)  # the barrier never saw two
    assert graph.max_active == 1


def test_a_split_request_is_joined_in_order_when_a_later_part_finishes_first() -> None:
    graph = SlowProbe(delay_s=0.1, delays={0.0: 0.4})  # the batch holding item 0 is slowest

    async def main() -> dict[str, np.ndarray]:
        batcher = make(graph, max_batch_size=4, max_concurrent_batches=3)
        try:
            return await batcher.submit(items(0, 10))
        finally:
            await batcher.close()

    result = asyncio.run(main())
    np.testing.assert_array_equal(result["y"], items(0, 10)["x"] * 2)
    assert graph.batches[-1] == [0.0, 1.0, 2.0, 3.0]  # the first part came back last
    assert graph.max_active == 3


def test_while_every_slot_is_busy_the_queue_forms_one_full_batch() -> None:
    graph = SlowProbe(delay_s=0.0)
    graph.gate = threading.Event()

    async def main() -> None:
        batcher = make(graph, max_batch_size=4, max_concurrent_batches=2)
        running = []
        # the first batch holds a slot alone; the second, alongside it, holds its share (2)
        for i, n in ((0, 1), (10, 2)):
            running.append(asyncio.ensure_future(batcher.submit(items(i, n))))
            await asyncio.to_thread(graph.wait_until_active, len(running))
        queued = [asyncio.ensure_future(batcher.submit(items(i, 1))) for i in range(2, 6)]
        await asyncio.sleep(0)
        graph.gate.set()
        await asyncio.gather(*running, *queued)
        await batcher.close()

    asyncio.run(main())
    assert sorted(len(b) for b in graph.batches) == [1, 2, 4]


def test_a_failing_batch_fails_only_its_own_requests_while_others_run() -> None:
    graph = SlowProbe(delay_s=0.02)

    async def main() -> list[object]:
        batcher = make(graph, max_batch_size=2, max_concurrent_batches=2)
        requests = [items(1, 2), {"x": np.array([[-1.0], [5.0], [6.0]], np.float32)}, items(7, 2)]
        try:
            jobs = (batcher.submit(r) for r in requests)
            return await asyncio.gather(*jobs, return_exceptions=True)
        finally:
            await batcher.close()

    good, bad, good2 = asyncio.run(main())
    assert isinstance(bad, BatchFailed) and "negative input" not in str(bad)  # log only
    np.testing.assert_array_equal(good["y"], items(1, 2)["x"] * 2)
    np.testing.assert_array_equal(good2["y"], items(7, 2)["x"] * 2)


def test_close_fails_running_batches_and_waits_for_their_threads() -> None:
    graph = SlowProbe(delay_s=0.2)

    async def main() -> None:
        batcher = make(graph, max_concurrent_batches=2)
        running = [asyncio.ensure_future(batcher.submit(items(i, 1))) for i in (1, 2)]
        queued = asyncio.ensure_future(batcher.submit(items(3, 1)))
        await asyncio.to_thread(graph.wait_until_active, 2)
        await batcher.close()
        assert graph.active == 0  # both runs finished before close returned
        for job in (*running, queued):
            with pytest.raises(Unavailable):
                await job
        with pytest.raises(Unavailable):
            await batcher.submit(items(4, 1))

    asyncio.run(main())
    assert graph.max_active == 2


def test_the_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_concurrent_batches"):
        make(SlowProbe(), max_concurrent_batches=0)


@pytest.mark.parametrize(("balance", "sizes"), [(False, [4, 16]), (True, [10, 10])])
def test_a_balanced_batcher_shares_a_large_request_among_free_slots(
    balance: bool, sizes: list[int]
) -> None:
    graph = SlowProbe(delay_s=0.0)

    async def main() -> np.ndarray:
        batcher = make(graph, max_batch_size=16, max_concurrent_batches=2, balance=balance)
        try:
            return (await batcher.submit(items(0, 20)))["y"]
        finally:
            await batcher.close()

    result = asyncio.run(main())
    assert sorted(len(b) for b in graph.batches) == sizes
    np.testing.assert_array_equal(result[:, 0], np.arange(20) * 2)  # joined in order


def _overlaps(graph: SlowProbe, runs: int, within_s: float) -> bool:
    with graph.lock:
        return graph.lock.wait_for(lambda: graph.active >= runs, within_s)


def test_a_few_requests_queue_behind_a_running_batch_instead_of_starting_their_own() -> None:
    graph = SlowProbe(delay_s=0.0)
    graph.gate = threading.Event()

    async def main() -> bool:
        batcher = make(graph, max_batch_size=8, max_concurrent_batches=2)  # 4 share a slot
        first = asyncio.ensure_future(batcher.submit(items(0, 1)))
        await asyncio.to_thread(graph.wait_until_active, 1)
        later = [asyncio.ensure_future(batcher.submit(items(i, 1))) for i in (1, 2, 3)]
        overlapped = await asyncio.to_thread(_overlaps, graph, 2, 0.5)
        graph.gate.set()
        await asyncio.gather(first, *later)
        await batcher.close()
        return overlapped

    assert not asyncio.run(main())
    assert graph.batches == [[0.0], [1.0, 2.0, 3.0]]  # one batch, once the first finished


def test_a_second_batch_starts_alongside_once_it_fills_its_share() -> None:
    graph = SlowProbe(delay_s=0.0)
    graph.gate = threading.Event()

    async def main() -> None:
        batcher = make(graph, max_batch_size=8, max_concurrent_batches=2)
        first = asyncio.ensure_future(batcher.submit(items(0, 1)))
        await asyncio.to_thread(graph.wait_until_active, 1)
        later = [asyncio.ensure_future(batcher.submit(items(i, 1))) for i in (1, 2, 3, 4)]
        await asyncio.to_thread(graph.wait_until_active, 2)  # fails if it never starts
        graph.gate.set()
        await asyncio.gather(first, *later)
        await batcher.close()

    asyncio.run(main())
    assert sorted(graph.batches) == [[0.0], [1.0, 2.0, 3.0, 4.0]]
