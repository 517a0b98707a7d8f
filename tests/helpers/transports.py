"""The real REST app and gRPC server over a service built in the test (fake graphs), on
loopback port 0 in the test's own event loop: for failure paths that a real model cannot be
made to take, still exercised over real HTTP and gRPC connections."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import uvicorn
from grpc_health.v1 import health
from latentserve.server.engine.service import GenerativeService
from latentserve.server.frontends.grpc.servicer import create_grpc_server
from latentserve.server.frontends.rest import create_rest_app


@dataclass(frozen=True)
class Endpoints:
    http_url: str
    grpc_target: str


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]  # the test runner owns signals
        yield


@contextlib.asynccontextmanager
async def serving(service: GenerativeService) -> AsyncIterator[Endpoints]:
    """Serve ``service`` over both transports until the block ends."""
    grpc_server = create_grpc_server(service, health.aio.HealthServicer())
    grpc_port = grpc_server.add_insecure_port("127.0.0.1:0")
    await grpc_server.start()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    config = uvicorn.Config(create_rest_app(service), lifespan="off", log_level="warning")
    http_server = _Server(config)
    http_task = asyncio.create_task(http_server.serve(sockets=[sock]))
    try:
        yield Endpoints(f"http://127.0.0.1:{sock.getsockname()[1]}", f"127.0.0.1:{grpc_port}")
    finally:
        http_server.should_exit = True
        await asyncio.gather(http_task, grpc_server.stop(None), return_exceptions=True)
        sock.close()
