"""HTTP connection limits against a real server with raw sockets: header size, the time a
request's head and body may take (slowloris), idle keep-alive and the open-connection cap."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from helpers.server_process import SERVER_TOML, ServerFactory, ServerProcess

LIMITS_TOML = SERVER_TOML.replace(
    "stream_chunk_size = 2\n",
    """stream_chunk_size = 2
max_header_bytes = 8192
http_header_timeout_s = 3
http_body_timeout_s = 3
http_keep_alive_s = 1
max_http_connections = 64
""",
)
HEADER_TIMEOUT_S = 3
DEADLINE_S = 30  # generous: the server must close well before this on a loaded machine


@pytest.fixture(scope="module")
def server(tiny_repository: Path, start_server: ServerFactory) -> Iterator:
    with start_server(tiny_repository, "limits", LIMITS_TOML) as process:
        yield process


def connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.http_port), timeout=DEADLINE_S)


def read_response(sock: socket.socket) -> tuple[int, dict]:
    """Status and JSON body of the one response the server sends before closing (a reset
    right after it, for bytes the server never read, ends the reading too)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def closed_by_server(sock: socket.socket, until: float) -> bool:
    """Wait for the server to end the connection (EOF or reset) before ``until``."""
    while time.monotonic() < until:
        readable, _, _ = select.select([sock], [], [], 0.2)
        if readable:
            try:
                if sock.recv(65536) == b"":
                    return True
            except ConnectionResetError:
                return True
    return False


def test_an_oversized_head_is_refused_without_reading_it_all(server: ServerProcess) -> None:
    rss_before = psutil.Process(server.process.pid).memory_info().rss
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        try:
            while sent < 64 * 2**20:  # the probe's 64 MB header
                sock.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused and closed while we were still sending: what we want
        assert sent < 64 * 2**20
        status, body = read_response(sock)
    assert status == 431 and body["error"]["code"] == "headers_too_large"
    grown = psutil.Process(server.process.pid).memory_info().rss - rss_before
    assert grown < 16 * 2**20, grown
    # A head under the limit is served as usual.
    ok = httpx.get(f"{server.http_url}/healthz", headers={"X-Fine": "a" * 6000})
    assert ok.status_code == 200


def test_slowloris_connections_are_closed(server: ServerProcess) -> None:
    slow = [connect(server) for _ in range(50)]
    try:
        for sock in slow:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        opened = time.monotonic()
        # Meanwhile a real client is served.
        assert httpx.get(f"{server.http_url}/healthz").status_code == 200
        open_ = set(slow)
        while open_ and time.monotonic() < opened + DEADLINE_S:
            for sock in list(open_):
                try:
                    sock.send(b"a")  # one byte now and then: never a complete head
                except OSError:
                    open_.discard(sock)
                    continue
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    open_.discard(sock)
            time.sleep(0.25)
        assert not open_, f"{len(open_)} slow connections still open after {DEADLINE_S}s"
        assert time.monotonic() - opened >= HEADER_TIMEOUT_S * 0.8
    finally:
        for sock in slow:
            sock.close()


def test_a_connection_that_sends_nothing_gets_408(server: ServerProcess) -> None:
    with connect(server) as sock:
        status, body = read_response(sock)
    assert status == 408 and body["error"]["code"] == "request_timeout"


def test_a_body_that_never_arrives_is_cut_off(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"POST /v1/models/vae-tiny/sample HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"n": '
        )
        assert closed_by_server(sock, time.monotonic() + DEADLINE_S)


def test_an_idle_kept_alive_connection_is_closed(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        assert closed_by_server(sock, time.monotonic() + DEADLINE_S)


def test_connections_past_the_cap_get_503_until_some_close(server: ServerProcess) -> None:
    idle = [connect(server) for _ in range(64)]
    try:
        deadline = time.monotonic() + HEADER_TIMEOUT_S * 0.8
        statuses = []
        while time.monotonic() < deadline:
            with connect(server) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            statuses.append(int(data.split()[1]))
            if statuses[-1] == 503:
                break
        assert statuses[-1] == 503, statuses
    finally:
        for sock in idle:
            sock.close()
    # With the idle connections gone, requests are served again.
    deadline = time.monotonic() + DEADLINE_S
    while httpx.get(f"{server.http_url}/healthz").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
