"""SampleMany's engine: requests of one call answered as each finishes, with a bound on how
many are worked on or unsent, and nothing left running once the call ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from latentserve.server.frontends.grpc.many import answer_as_done


class Gated:
    """Requests 0..n-1 whose answers each wait for their own gate; it records how many
    requests were read and how many answers were being worked on at most."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.gates = [asyncio.Event() for _ in range(n)]
        self.read = 0
        self.working = 0
        self.most_working = 0
        self.cancelled: list[int] = []

    async def requests(self) -> AsyncIterator[int]:
        for i in range(self.n):
            self.read += 1
            yield i

    async def answer(self, i: int) -> str:
        self.working += 1
        self.most_working = max(self.most_working, self.working)
        try:
            await self.gates[i].wait()
        except asyncio.CancelledError:
            self.cancelled.append(i)
            raise
        finally:
            self.working -= 1
        if i == 13:
            raise RuntimeError("a broken answer")
        return f"answer {i}"


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_answers_come_as_they_finish_and_every_request_is_answered() -> None:
    async def main() -> list[str]:
        gated = Gated(4)
        for i in (2, 0, 3, 1):  # finish out of order
            gated.gates[i].set()
        return [a async for a in answer_as_done(gated.requests(), gated.answer, limit=8)]

    answers = asyncio.run(main())
    assert sorted(answers) == [f"answer {i}" for i in range(4)]


def test_at_most_limit_requests_are_read_until_an_answer_is_taken() -> None:
    async def main() -> None:
        gated = Gated(10)
        answers = answer_as_done(gated.requests(), gated.answer, limit=3)
        first = asyncio.ensure_future(anext(answers))
        await settle()
        assert (gated.read, gated.working) == (3, 3)  # the fourth is not even read
        for gate in gated.gates[:3]:  # the three may finish now...
            gate.set()
        await settle()
        assert await first in {f"answer {i}" for i in range(3)}
        await settle()
        # ...but an answer holds its slot until the writer has sent it and asks for more
        assert (gated.read, gated.working) == (3, 0)
        await anext(answers)  # the first answer's slot is free now: one more is read
        await settle()
        assert (gated.read, gated.working) == (4, 1)
        for gate in gated.gates:
            gate.set()
        rest = [a async for a in answers]
        assert len(rest) == 8 and gated.read == 10 and gated.most_working == 3

    asyncio.run(main())


def test_closing_the_call_cancels_what_is_being_worked_on() -> None:
    async def main() -> list[int]:
        gated = Gated(5)
        gated.gates[1].set()
        answers = answer_as_done(gated.requests(), gated.answer, limit=5)
        assert await anext(answers) == "answer 1"
        await asyncio.wait_for(answers.aclose(), 5)  # the client went away
        return sorted(gated.cancelled)

    assert asyncio.run(main()) == [0, 2, 3, 4]


def test_an_answer_that_raises_ends_the_call_and_cancels_the_rest() -> None:
    async def main() -> Gated:
        gated = Gated(14)
        gated.gates[13].set()

        async def drain() -> None:
            async for _ in answer_as_done(gated.requests(), gated.answer, limit=16):
                pass

        with pytest.raises(RuntimeError, match="a broken answer"):
            await asyncio.wait_for(drain(), 5)
        return gated

    gated = asyncio.run(main())
    assert sorted(gated.cancelled) == list(range(13))


def test_a_limit_below_one_is_refused() -> None:
    async def main() -> None:
        async for _ in answer_as_done(Gated(1).requests(), Gated(1).answer, limit=0):
            pass

    with pytest.raises(ValueError, match="at least 1"):
        asyncio.run(main())
