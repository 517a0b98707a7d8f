"""Server-only fixtures (the shared ``tiny_repository`` comes from tests/conftest.py).

``http``, ``stub`` and ``clients`` talk to whichever ``server`` the module uses: a module
that serves another repository overrides ``server`` alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from helpers.server_process import ServerFactory, ServerProcess
from latentserve.v1 import generative_pb2_grpc as pb_grpc


@pytest.fixture(scope="module")
def server(tiny_repository: Path, start_server: ServerFactory) -> Iterator[ServerProcess]:
    with start_server(tiny_repository, "server") as process:
        yield process


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[pb_grpc.GenerativeServiceStub]:
    with grpc.insecure_channel(server.grpc_url.removeprefix("grpc://")) as channel:
        yield pb_grpc.GenerativeServiceStub(channel)


@pytest.fixture(scope="module")
def clients(server: ServerProcess) -> Iterator[tuple]:
    """The SDK's REST and gRPC clients of the module's server, in that order."""
    from latentserve.clients import connect

    with connect(server.http_url) as rest, connect(server.grpc_url) as grpc_client:
        yield rest, grpc_client
