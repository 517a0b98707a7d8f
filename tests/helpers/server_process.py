"""A real ``latentserve serve`` process on loopback ports it picks itself, for integration
tests (start one through the ``start_server`` fixture, which also stops it).

The process runs with torch made unimportable (a ``sitecustomize`` on its PYTHONPATH), so
every integration test also checks that serving never imports torch.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import numpy as np
from latentserve.clients import GrpcClient, RestClient
from latentserve.clients.local import LocalServer
from latentserve.clients.sse import parse_sse
from prometheus_client.parser import text_string_to_metric_families

from helpers.tools import until as until  # re-exported: the integration tests import it here

BLOCK_TORCH = """
import importlib.abc, sys

class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"{name} is blocked: the serving path must not import torch")
        return None

sys.meta_path.insert(0, _NoTorch())
"""

# ae-tiny gets a one-request queue that waits 1.5 s to fill a batch: a second request
# arriving meanwhile is refused, which makes the overload tests deterministic.
SERVER_TOML = """
max_body_bytes = 65536
max_image_pixels = 1000000
stream_chunk_size = 2

[models.ae-tiny]
max_queue_size = 1
max_queue_delay_ms = 1500
max_batch_size = 64
"""


class ServerProcess(LocalServer):
    """The SDK's ``LocalServer`` with torch blocked and the test settings file."""

    def __init__(
        self,
        repository: Path,
        workdir: Path,
        config: str = SERVER_TOML,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        ca_file: Path | None = None,
    ) -> None:
        blocker = workdir / "no_torch"
        blocker.mkdir(exist_ok=True)
        (blocker / "sitecustomize.py").write_text(BLOCK_TORCH)
        (workdir / "server.toml").write_text(config)
        super().__init__(
            repository,
            ["--config", str(workdir / "server.toml"), *extra_args],
            ready_timeout=60.0,
            log_path=workdir / "server.log",
            env={"PYTHONPATH": str(blocker), **(env or {})},
            ca_file=ca_file,
        )
        self.start()

    @property
    def process(self) -> subprocess.Popen:
        assert self._process is not None, "server is not running"
        return self._process

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int | None:
        return super().stop(timeout)


# What the ``start_server`` fixture (tests/conftest.py) gives: a context manager factory.
ServerFactory = Callable[..., AbstractContextManager[ServerProcess]]


def connect_to(server: LocalServer, transport: str) -> RestClient | GrpcClient:
    """The SDK client of ``server`` for ``transport`` (``rest`` or ``grpc``)."""
    if transport == "rest":
        return RestClient(server.http_url, timeout=30)
    return GrpcClient(server.grpc_target, timeout=30)


def sse(response: httpx.Response) -> Iterator[tuple[str, dict]]:
    """(event name, JSON data) of each Server-Sent Event of a streaming response."""
    for event in parse_sse(response.iter_lines()):
        yield event.event, json.loads(event.data)


def metric(http: httpx.Client, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(http.get("/metrics").text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def pixels(images: list) -> np.ndarray:
    """PIL images from the SDK as one uint8 array, to compare bit for bit."""
    return np.stack([np.asarray(image) for image in images])
