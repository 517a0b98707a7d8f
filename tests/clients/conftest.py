"""One real ``latentserve serve`` process over the tiny repository for the client tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from latentserve.clients import GrpcClient, RestClient
from latentserve.clients.local import LocalServer


@pytest.fixture(scope="session")
def live_server(tiny_repository: Path) -> Iterator[LocalServer]:
    with LocalServer(tiny_repository) as server:
        yield server


@pytest.fixture(params=["rest", "grpc"])
def client(request: pytest.FixtureRequest, live_server: LocalServer) -> Iterator:
    """The same tests run over both transports: the SDK promises one behaviour."""
    if request.param == "rest":
        sdk_client = RestClient(live_server.http_url, timeout=30)
    else:
        sdk_client = GrpcClient(live_server.grpc_target, timeout=30)
    with sdk_client:
        yield sdk_client
