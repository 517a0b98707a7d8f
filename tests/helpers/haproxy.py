"""A real haproxy balancing HTTP round-robin over given loopback backends, for the tests
of replicas behind a load balancer."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
from latentserve.clients.local import free_port

from helpers.tools import wait_until_answers

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
            wait_until_answers(process, lambda: _answers(url), log_path, "haproxy", 20)
            yield url
        finally:
            process.terminate()
            process.wait(10)


def _answers(url: str) -> bool:
    """Any HTTP answer through haproxy means it listens (its backends may still be down)."""
    try:
        httpx.get(f"{url}/healthz", timeout=1)
    except httpx.TransportError:
        return False
    return True
