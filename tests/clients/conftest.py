"""Real ``latentserve serve`` processes for the client tests: the tiny repository, and a
one-model repository whose jobs run long enough to follow and cancel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from latentserve.clients import GrpcClient, RestClient
from latentserve.clients.local import LocalServer

if TYPE_CHECKING:
    from tiny_runs import TinyRuns


def connect_to(server: LocalServer, transport: str) -> RestClient | GrpcClient:
    if transport == "rest":
        return RestClient(server.http_url, timeout=30)
    return GrpcClient(server.grpc_target, timeout=30)


@pytest.fixture(scope="session")
def live_server(tiny_repository: Path) -> Iterator[LocalServer]:
    with LocalServer(tiny_repository) as server:
        yield server


@pytest.fixture(params=["rest", "grpc"])
def client(request: pytest.FixtureRequest, live_server: LocalServer) -> Iterator:
    """The same tests run over both transports: the SDK promises one behaviour."""
    with connect_to(live_server, request.param) as sdk_client:
        yield sdk_client


@pytest.fixture(scope="session")
def vq_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_runs: TinyRuns
) -> Iterator[LocalServer]:
    """``vqvae-tiny`` alone, the cheapest model that reports progress (one step per code
    position). Its decoder waits 1 s to fill a batch, so every job is still running for
    about a second after its last progress event: time to cancel it."""
    repository = tiny_runs.export(
        tmp_path_factory.mktemp("vq_repository"), [("vqvae-tiny", "vqvae-tiny", "1", 0)]
    )
    config = tmp_path_factory.mktemp("vq_settings") / "settings.toml"
    config.write_text("[models.vqvae-tiny]\nmax_queue_delay_ms = 1000\n")
    with LocalServer(repository, ["--config", str(config)]) as server:
        yield server


@pytest.fixture(params=["rest", "grpc"])
def vq_client(request: pytest.FixtureRequest, vq_server: LocalServer) -> Iterator:
    with connect_to(vq_server, request.param) as sdk_client:
        yield sdk_client
