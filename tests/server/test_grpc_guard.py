"""The gRPC call guard on a real grpc.aio server: undecodable requests and unexpected
exceptions end with a documented status and no exception text."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from latentserve.server.security.grpc_guard import INTERNAL_MESSAGE, CallGuard, method_name
from latentserve.v1 import generative_pb2 as pb

SECRET = "secret detail of a server bug"


async def broken_unary(request: pb.GetModelRequest, context: object) -> pb.ModelInfo:
    if request.model == "ok":
        return pb.ModelInfo(name="ok")
    raise ValueError(SECRET)


async def broken_stream(request: pb.GetModelRequest, context: object) -> AsyncIterator:
    yield pb.ModelInfo(name="first")
    raise KeyError(SECRET)


async def echo(requests: AsyncIterator[pb.GetModelRequest], context: object) -> AsyncIterator:
    """A bidirectional call: one answer per request; a request for "boom" breaks it."""
    async for request in requests:
        if request.model == "boom":
            raise KeyError(SECRET)
        yield pb.ModelInfo(name=request.model)


HANDLERS = {
    "Get": grpc.unary_unary_rpc_method_handler(
        broken_unary, pb.GetModelRequest.FromString, pb.ModelInfo.SerializeToString
    ),
    "Stream": grpc.unary_stream_rpc_method_handler(
        broken_stream, pb.GetModelRequest.FromString, pb.ModelInfo.SerializeToString
    ),
    "Echo": grpc.stream_stream_rpc_method_handler(
        echo, pb.GetModelRequest.FromString, pb.ModelInfo.SerializeToString
    ),
}


async def bidirectional(port: int, messages: list[bytes]) -> tuple[list[str], object]:
    """The echo call's answers to raw ``messages`` and the status it ended with."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.stream_stream("/test.Broken/Echo")(iter(messages), timeout=10)
        received: list[str] = []
        try:
            async for answer in call:
                received.append(pb.ModelInfo.FromString(answer).name)
        except grpc.aio.AioRpcError as exc:
            return received, (exc.code(), exc.details())
    return received, grpc.StatusCode.OK


def message(model: str) -> bytes:
    return pb.GetModelRequest(model=model).SerializeToString()


async def exercise() -> tuple[list[object], list[str]]:
    refused: list[str] = []
    server = grpc.aio.server(interceptors=[CallGuard(refused.append)])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Broken", HANDLERS)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    outcomes: list[object] = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            get = channel.unary_unary(
                "/test.Broken/Get",
                pb.GetModelRequest.SerializeToString,
                pb.ModelInfo.FromString,
            )
            raw = channel.unary_unary("/test.Broken/Get")
            stream = channel.unary_stream(
                "/test.Broken/Stream", pb.GetModelRequest.SerializeToString, pb.ModelInfo.FromString
            )
            outcomes.append((await get(pb.GetModelRequest(model="ok"), timeout=10)).name)
            for call in (
                lambda: get(pb.GetModelRequest(model="boom"), timeout=10),
                lambda: raw(b"\xff\xff\xff", timeout=10),
            ):
                try:
                    await call()
                except grpc.aio.AioRpcError as exc:
                    outcomes.append((exc.code(), exc.details()))
            received = []
            try:
                async for item in stream(pb.GetModelRequest(model="x"), timeout=10):
                    received.append(item.name)
            except grpc.aio.AioRpcError as exc:
                outcomes.append((received, exc.code(), exc.details()))
        for messages in (
            [message("a"), message("b")],
            [message("a"), b"\xff\xff\xff", message("c")],
            [message("a"), message("boom")],
        ):
            outcomes.append(await bidirectional(port, messages))
    finally:
        await server.stop(None)
    return outcomes, refused


def test_unexpected_exceptions_are_internal_and_undecodable_requests_invalid() -> None:
    outcomes, refused = asyncio.run(exercise())
    assert outcomes == [
        "ok",
        (grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE),
        (grpc.StatusCode.INVALID_ARGUMENT, "request: not a valid protobuf message for this method"),
        (["first"], grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE),
        # a bidirectional call: answered up to the message that does not decode, or breaks
        (["a", "b"], grpc.StatusCode.OK),
        (
            ["a"],
            (
                grpc.StatusCode.INVALID_ARGUMENT,
                "request: not a valid protobuf message for this method",
            ),
        ),
        (["a"], (grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)),
    ]
    assert refused == ["get", "echo"]


@pytest.mark.parametrize(
    ("full", "name"),
    [
        ("/latentserve.v1.GenerativeService/StreamSample", "stream_sample"),
        ("/latentserve.v1.GenerativeService/Sample", "sample"),
        ("/latentserve.v1.GenerativeService/LogProb", "log_prob"),
        ("/grpc.health.v1.Health/Check", "check"),
    ],
)
def test_method_names_are_snake_case(full: str, name: str) -> None:
    assert method_name(full) == name
