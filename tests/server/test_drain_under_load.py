"""SIGTERM under mixed REST + gRPC load: no accepted request is lost.

Every request the server accepted is answered before it exits (nothing in flight at the
end, and the client received exactly as many successes as the server counted); every
other request was refused before acceptance (503 / UNAVAILABLE, or no connection)."""

from __future__ import annotations

import asyncio
import queue
import re
import signal
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from helpers.server_process import ServerProcess
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from soak import SoakReport, drive  # noqa: E402

pytestmark = pytest.mark.slow

REFUSED_BEFORE_ACCEPTANCE = {
    "rest:503",
    "rest:ConnectError",  # the listener has closed
    "rest:RemoteProtocolError",  # an idle kept-alive connection closed as the request left
    "rest:ReadError",
    "grpc:UNAVAILABLE",
}


async def load_then_sigterm(server: ServerProcess) -> SoakReport:
    stop = asyncio.Event()
    report = SoakReport()
    load = asyncio.ensure_future(
        drive(server.http_url, server.grpc_target, "vae-tiny", stop, concurrency=8, report=report)
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while report.outcomes["rest:200"] + report.outcomes["grpc:OK"] < 100:
        assert loop.time() < deadline and not load.done(), report.outcomes
        await asyncio.sleep(0.05)
    server.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.process.wait, 60) == 0
    stop.set()
    await load
    return report


def test_sigterm_under_load_loses_no_accepted_request(
    tiny_repository: Path, tmp_path: Path
) -> None:
    server = ServerProcess(tiny_repository, tmp_path)
    try:
        report = asyncio.run(load_then_sigterm(server))
    finally:
        server.stop()
    log = server.log()
    stopped = re.search(r"stopped: requests answered: (.*); in flight: (\d+)", log)
    assert stopped, log
    answered = dict(pair.split("=") for pair in stopped.group(1).split())
    assert stopped.group(2) == "0", log  # nothing accepted was abandoned
    assert set(answered) == {"ok"}, answered  # nothing accepted failed either
    client_ok = report.outcomes["rest:200"] + report.outcomes["grpc:OK"]
    assert client_ok == int(answered["ok"]), (report.outcomes, answered)
    others = set(report.outcomes) - {"rest:200", "grpc:OK"}
    assert others <= REFUSED_BEFORE_ACCEPTANCE, report.outcomes
    print(f"sigterm under load: client saw {dict(report.outcomes)}; server {stopped.group(0)}")


async def grpc_calls_back_to_back(target: str, stop: asyncio.Event, outcomes: Counter) -> None:
    """One client that sends its next call as soon as the last one is answered."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GenerativeServiceStub(channel)
        while not stop.is_set():
            try:
                await stub.GetModel(pb.GetModelRequest(model="vae-tiny"), timeout=30)
            except grpc.aio.AioRpcError as error:
                outcomes[error.code().name] += 1
            else:
                outcomes["OK"] += 1


async def sigterm_under_back_to_back_calls(server: ServerProcess, clients: int) -> Counter:
    stop = asyncio.Event()
    outcomes: Counter = Counter()
    callers = [
        asyncio.ensure_future(grpc_calls_back_to_back(server.grpc_target, stop, outcomes))
        for _ in range(clients)
    ]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while outcomes["OK"] < 200:  # every client is calling
        assert loop.time() < deadline, outcomes
        await asyncio.sleep(0.05)
    server.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.process.wait, 60) == 0
    stop.set()
    await asyncio.gather(*callers)
    return outcomes


def test_calls_arriving_during_shutdown_are_refused_not_cancelled(
    tiny_repository: Path, tmp_path: Path
) -> None:
    """gRPC core cancels the calls it holds but has not handed to the server when it shuts
    down: with clients calling back to back some call is always there. Each must be refused
    with UNAVAILABLE (retry elsewhere) instead."""
    server = ServerProcess(tiny_repository, tmp_path)
    try:
        outcomes = asyncio.run(sigterm_under_back_to_back_calls(server, clients=16))
    finally:
        server.stop()
    assert set(outcomes) <= {"OK", "UNAVAILABLE"}, outcomes
    assert outcomes["UNAVAILABLE"] >= 16, outcomes  # each client met the shutdown


def sample_many_blocking(target: str, window: int, outcomes: Counter, took: threading.Event) -> str:
    """One SampleMany call kept ``window`` requests deep (the next sent as each answer
    arrives); ``took`` is set once 100 answers were OK. Returns how the call ended.

    grpcio's synchronous client: its asyncio client can report INTERNAL instead of the
    server's status when a request is being written as the server ends the call
    (grpc/grpc#36066), which is the client library's race, not the server's answer."""
    answered: queue.SimpleQueue = queue.SimpleQueue()
    for _ in range(window):
        answered.put(True)

    def requests() -> Iterator[pb.SampleManyRequest]:
        seed = 0
        while answered.get():
            yield pb.SampleManyRequest(
                id=seed, request=pb.SampleRequest(model="vae-tiny", seed=seed)
            )
            seed += 1

    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.GenerativeServiceStub(channel)
        try:
            for answer in stub.SampleMany(requests(), timeout=60):
                if answer.WhichOneof("result") == "error":
                    outcomes[answer.error.code] += 1
                else:
                    outcomes["OK"] += 1
                    if outcomes["OK"] == 100:
                        took.set()
                answered.put(True)
        except grpc.RpcError as error:
            return error.code().name
        finally:
            answered.put(False)  # ends the request iterator
            took.set()  # also when the call ended early: the test reads its outcomes
    return "OK"


def test_sigterm_ends_a_sample_many_call_after_answering_what_it_took(
    tiny_repository: Path, tmp_path: Path
) -> None:
    """A SampleMany call open when the server is told to stop: every request it had taken
    is answered, the first one read after that is refused with UNAVAILABLE, and the call
    ends UNAVAILABLE (send the rest elsewhere) instead of being cut off by the shutdown."""
    server = ServerProcess(tiny_repository, tmp_path)
    outcomes: Counter = Counter()
    took = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        try:
            call = pool.submit(sample_many_blocking, server.grpc_target, 8, outcomes, took)
            assert took.wait(60) and not call.done(), (outcomes, call.done() and call.result())
            server.process.send_signal(signal.SIGTERM)
            assert server.process.wait(60) == 0
            ending = call.result(60)
        finally:
            server.stop()  # before the pool waits for the call
    unavailable = grpc.StatusCode.UNAVAILABLE.value[0]
    assert ending == "UNAVAILABLE", (ending, outcomes)
    assert set(outcomes) == {"OK", unavailable} and outcomes[unavailable] == 1, outcomes
    stopped = re.search(r"stopped: requests answered: (.*); in flight: (\d+)", server.log())
    assert stopped and stopped.group(2) == "0", server.log()
    assert stopped.group(1) == f"ok={outcomes['OK']}", (stopped.group(0), outcomes)
