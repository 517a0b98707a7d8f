"""The asyncio SDK's ``sample_many`` when grpcio loses a draining server's status.

grpcio's asyncio client reports INTERNAL ("Failed execute_batch ... SendMessageOperation")
instead of the server's status when a request is being written just as the server ends
the call (grpc/grpc#36066). A draining server refuses one request with UNAVAILABLE and
then ends the call with UNAVAILABLE; the SDK must still say UNAVAILABLE (retry elsewhere)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from latentserve.clients import ServerError, UnavailableError
from latentserve.clients.grpc_async import AsyncGrpcClient
from latentserve.v1 import generative_pb2 as pb

SHUTTING_DOWN = "server is shutting down"
RACED = 'Failed "execute_batch": (<grpc._cython.cygrpc.SendMessageOperation object>,)'


def refusal(request_id: int) -> pb.SampleManyResponse:
    error = pb.RequestError(code=grpc.StatusCode.UNAVAILABLE.value[0], message=SHUTTING_DOWN)
    return pb.SampleManyResponse(id=request_id, error=error)


def deadline_passed(request_id: int) -> pb.SampleManyResponse:
    code = grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    return pb.SampleManyResponse(id=request_id, error=pb.RequestError(code=code, message="late"))


class EndedCall:
    """A SampleMany call that answers ``answers``, then fails with ``code`` and ``debug``."""

    def __init__(self, answers: list[pb.SampleManyResponse], code: grpc.StatusCode, debug: str):
        self._answers = answers
        self._error = grpc.aio.AioRpcError(
            code, grpc.aio.Metadata(), grpc.aio.Metadata(), "Internal error from Core", debug
        )
        self.cancelled = False

    async def __aiter__(self) -> AsyncIterator[pb.SampleManyResponse]:
        for answer in self._answers:
            yield answer
        raise self._error

    def cancel(self) -> bool:
        self.cancelled = True
        return True


class Stub:
    def __init__(self, call: EndedCall) -> None:
        self.call = call

    def SampleMany(self, requests: Any, **kwargs: Any) -> EndedCall:  # noqa: N802 - gRPC's name
        return self.call


async def sample_many(call: EndedCall) -> tuple[list[Any], BaseException]:
    client = AsyncGrpcClient("127.0.0.1:1")
    client._stub = Stub(call)  # type: ignore[assignment]
    answers: list[Any] = []
    try:
        async for answer in client.sample_many([{"model": "m"}] * 3):
            answers.append(answer)
    except Exception as exc:  # noqa: BLE001 - the test reads what was raised
        return answers, exc
    finally:
        await client.close()
    raise AssertionError("the call did not fail")


def test_a_lost_status_after_the_drain_refusal_is_unavailable() -> None:
    call = EndedCall([refusal(0)], grpc.StatusCode.INTERNAL, RACED)
    answers, raised = asyncio.run(sample_many(call))
    assert [type(result) for _, result in answers] == [UnavailableError]
    assert type(raised) is UnavailableError and SHUTTING_DOWN in str(raised), raised
    assert call.cancelled


@pytest.mark.parametrize(
    ("answers", "debug"),
    [
        ([], RACED),  # no refusal came first: nothing says the server drains
        ([refusal(0)], "some other internal failure"),  # not the write race
        ([refusal(0), deadline_passed(1)], RACED),  # the refusal was not the last answer
    ],
)
def test_other_internal_failures_stay_server_errors(
    answers: list[pb.SampleManyResponse], debug: str
) -> None:
    _, raised = asyncio.run(sample_many(EndedCall(answers, grpc.StatusCode.INTERNAL, debug)))
    assert type(raised) is ServerError, raised
