"""CPU time per request of the server's Python path, in-process, for before/after ratios.

Load tests on a shared machine give figures that move with everyone else's work; the CPU
time the event-loop thread spends per request moves far less. This loads a repository
into the real service, builds the real REST app (with the routers, auth and CORS layers
the server wraps it in) and the real gRPC servicer, and sends ``--requests`` n = 1 sample
requests ``--concurrency`` at a time:

- ``rest``: straight into the ASGI app (HTTP parsing and sockets are uvicorn's, not ours);
- ``grpc``: straight into the servicer's ``Sample`` (protobuf in and out; gRPC core and the
  interceptors are left out);
- ``v2-grpc``: the same for the Open Inference Protocol's ``ModelInfer`` (an ``n`` tensor in,
  the ``images`` and ``seed`` tensors out), the path perf_analyzer measures.

The graph runs for real on its batch worker threads. Printed per repeat and as medians:
event-loop thread CPU µs per request (``time.thread_time``) and whole-process CPU µs per
request (``time.process_time``, graph included). Run it under ``nice`` next to the other
tree's run, alternating, and compare the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from latentserve.inference import grpc_predict_v2_pb2 as v2_pb
from latentserve.server.engine.service import GenerativeService
from latentserve.server.frontends import openai as openai_images
from latentserve.server.frontends.grpc.servicer import GrpcGenerativeService
from latentserve.server.frontends.rest.app import create_rest_app
from latentserve.server.frontends.v2 import rest as v2_rest
from latentserve.server.frontends.v2.grpc_service import InferenceServicer
from latentserve.server.metrics import ServerMetrics
from latentserve.server.security import auth, cors
from latentserve.server.security.admin import AdminTokens
from latentserve.server.settings import Settings
from latentserve.v1 import generative_pb2 as pb
from prometheus_client import CollectorRegistry

Send = Callable[[], Awaitable[None]]


def rest_sender(service: GenerativeService, model: str) -> Send:
    """One ``POST /v1/models/{model}/sample {"n": 1}`` through the ASGI app per call."""
    app = create_rest_app(service, other_routers=(openai_images.router, v2_rest.router))
    auth.protect_rest(app, auth.BearerAuth.from_settings(service.settings, service.metrics))
    cors.allow_cross_origin(app, service.settings)
    path = f"/v1/models/{model}/sample"
    body = json.dumps({"n": 1}).encode()
    headers = [
        (b"host", b"bench"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]

    async def send_one() -> None:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
        }  # fmt: skip
        delivered = asyncio.Event()
        status: list[int] = []

        async def receive() -> dict[str, Any]:
            if not delivered.is_set():
                delivered.set()
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Future()  # the client never disconnects
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)
        if status != [200]:
            raise RuntimeError(f"REST sample answered {status}")

    return send_one


class _Context:
    """What the servicer asks of a unary call's context: no deadline, nothing aborted."""

    def time_remaining(self) -> None:
        return None

    async def abort(self, code: Any, details: str, *args: Any) -> None:
        raise RuntimeError(f"gRPC Sample aborted: {code} {details}")


def grpc_sender(service: GenerativeService, model: str) -> Send:
    """One ``Sample(n=1)`` through the servicer per call."""
    servicer = GrpcGenerativeService(service, AdminTokens())
    request = pb.SampleRequest(model=model, n=1)
    context = _Context()

    async def send_one() -> None:
        reply = await servicer.Sample(request, context)
        if len(reply.images) != 1:
            raise RuntimeError("gRPC Sample returned no image")

    return send_one


def v2_grpc_sender(service: GenerativeService, model: str) -> Send:
    """One Open Inference Protocol ``ModelInfer`` with ``n`` = 1 through the servicer."""
    servicer = InferenceServicer(service, AdminTokens())
    request = v2_pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="n", datatype="INT64", shape=[1])
    request.raw_input_contents.append((1).to_bytes(8, "little"))
    context = _Context()

    async def send_one() -> None:
        reply = await servicer.ModelInfer(request, context)
        if [o.name for o in reply.outputs] != ["images", "seed"]:
            raise RuntimeError(f"ModelInfer answered {reply.outputs}")

    return send_one


async def measure(send: Send, requests: int, concurrency: int) -> tuple[float, float]:
    """(loop-thread CPU µs, process CPU µs) per request over ``requests`` calls."""
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await send()

    thread, process = time.thread_time(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (
        (time.thread_time() - thread) / requests * 1e6,
        (time.process_time() - process) / requests * 1e6,
    )


async def run(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    settings = Settings(repository=args.repository)
    service = GenerativeService(settings, ServerMetrics(CollectorRegistry()))
    await service.load()
    senders = {"rest": rest_sender, "grpc": grpc_sender, "v2-grpc": v2_grpc_sender}
    results: dict[str, dict[str, Any]] = {}
    try:
        for transport in args.transports:
            send = senders[transport](service, args.model)
            await measure(send, max(args.requests // 4, 1), args.concurrency)  # warm-up
            runs = [
                await measure(send, args.requests, args.concurrency) for _ in range(args.repeats)
            ]
            results[transport] = {
                "loop_us_per_request": statistics.median(r[0] for r in runs),
                "process_us_per_request": statistics.median(r[1] for r in runs),
                "runs": [[round(x, 1) for x in r] for r in runs],
            }
    finally:
        await service.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", type=Path, default=Path("models"))
    parser.add_argument("--model", default="vae-mnist")
    parser.add_argument(
        "--transports",
        nargs="+",
        choices=("rest", "grpc", "v2-grpc"),
        default=["rest", "grpc", "v2-grpc"],
    )
    parser.add_argument("--requests", type=int, default=2000, help="requests per repeat")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the medians here")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    for transport, r in results.items():
        print(
            f"{transport}: event-loop thread {r['loop_us_per_request']:.1f} µs/request, "
            f"process {r['process_us_per_request']:.1f} µs/request "
            f"(median of {args.repeats}; runs [loop, process]: {r['runs']})"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
