"""Real ``latentserve serve`` processes for the client tests: the tiny repository, and a
one-model repository whose jobs run long enough to follow and cancel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers.server_process import ServerFactory, ServerProcess, connect_to

if TYPE_CHECKING:
    from tiny_runs import TinyRuns


@pytest.fixture(scope="session")
def live_server(tiny_repository: Path, start_server: ServerFactory) -> Iterator[ServerProcess]:
    with start_server(tiny_repository, "live", "") as server:
        yield server


@pytest.fixture(params=["rest", "grpc"])
def client(request: pytest.FixtureRequest, live_server: ServerProcess) -> Iterator:
    """The same tests run over both transports: the SDK promises one behaviour."""
    with connect_to(live_server, request.param) as sdk_client:
        yield sdk_client


@pytest.fixture(scope="session")
def vq_server(
    tmp_path_factory: pytest.TempPathFactory, start_server: ServerFactory, tiny_runs: TinyRuns
) -> Iterator[ServerProcess]:
    """``vqvae-tiny`` alone, the cheapest model that reports progress (one step per code
    position). Its decoder waits 1 s to fill a batch, so every job is still running for
    about a second after its last progress event: time to cancel it."""
    repository = tiny_runs.export(
        tmp_path_factory.mktemp("vq_repository"), [("vqvae-tiny", "vqvae-tiny", "1", 0)]
    )
    config = "[models.vqvae-tiny]\nmax_queue_delay_ms = 1000\n"
    with start_server(repository, "vq", config) as server:
        yield server


@pytest.fixture(params=["rest", "grpc"])
def vq_client(request: pytest.FixtureRequest, vq_server: ServerProcess) -> Iterator:
    with connect_to(vq_server, request.param) as sdk_client:
        yield sdk_client
