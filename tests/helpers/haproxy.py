"""A real haproxy balancing HTTP round-robin over given loopback backends, for the tests
of replicas behind a load balancer."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
from latentserve.clients.local import free_port

CONFIG = """\
global
    maxconn 256

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s

frontend api
    bind 127.0.0.1:{port}
    default_backend replicas

backend replicas
    balance roundrobin
{servers}
"""


@contextmanager
def running_haproxy(binary: str, backends: Sequence[str], workdir: Path) -> Iterator[str]:
    """haproxy in front of ``backends`` (``host:port``); yields its base URL once it
    answers."""
    port = free_port()
    servers = "".join(f"    server r{i} {b}\n" for i, b in enumerate(backends))
    config = workdir / "haproxy.cfg"
    config.write_text(CONFIG.format(port=port, servers=servers))
    log_path = workdir / "haproxy.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [binary, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 20
            while True:
                assert process.poll() is None, log_path.read_text()
                try:
                    httpx.get(f"{url}/healthz", timeout=1)
                    break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "haproxy did not start"
                time.sleep(0.02)
            yield url
        finally:
            process.terminate()
            process.wait(10)
