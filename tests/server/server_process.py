"""A real ``latentserve serve`` process on free loopback ports, for integration tests.

The process runs with torch made unimportable (a ``sitecustomize`` on its PYTHONPATH), so
every integration test also checks that serving never imports torch.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A ``python -m latentserve.cli serve`` child process, torch blocked."""

    def __init__(self, repository: Path, workdir: Path, config: str = SERVER_TOML) -> None:
        self.http_port, self.grpc_port = free_port(), free_port()
        self.http_url = f"http://127.0.0.1:{self.http_port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        blocker = workdir / "no_torch"
        blocker.mkdir(exist_ok=True)
        (blocker / "sitecustomize.py").write_text(BLOCK_TORCH)
        (workdir / "server.toml").write_text(config)
        self.env = {**os.environ, "PYTHONPATH": str(blocker)}
        self.log_path = workdir / "server.log"
        command = [
            sys.executable, "-m", "latentserve.cli", "serve",
            "--repository", str(repository), "--config", str(workdir / "server.toml"),
            "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )
        self._wait_ready()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.http_url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"server not ready after {timeout} s:\n{self.log()}")

    def stop(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
