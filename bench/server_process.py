"""Start ``latentserve serve`` on free loopback ports for a benchmark, and stop it after."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(
    repository: Path, extra_args: list[str], ready_timeout: float = 120.0
) -> Iterator[tuple[str, str]]:
    """Yield ``(rest_url, grpc_target)`` of a ready server; terminate it on exit."""
    http_port, grpc_port = free_port(), free_port()
    command = [
        sys.executable, "-m", "latentserve.cli", "serve", "--repository", str(repository),
        "--host", "127.0.0.1", "--http-port", str(http_port), "--grpc-port", str(grpc_port),
        *extra_args,
    ]  # fmt: skip
    process = subprocess.Popen(command)
    url = f"http://127.0.0.1:{http_port}"
    try:
        wait_ready(url, process, ready_timeout)
        yield url, f"127.0.0.1:{grpc_port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_ready(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"server at {url} not ready after {timeout:.0f} s")
