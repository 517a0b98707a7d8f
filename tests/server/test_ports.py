"""Servers listen on port 0 and report the ports they got, so no test races another for a
port it picked beforehand."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from helpers.server_process import ServerFactory, connect_to

pytestmark = pytest.mark.slow


def test_two_servers_on_port_zero_report_distinct_working_ports(
    tiny_repository: Path, start_server: ServerFactory
) -> None:
    with (
        start_server(tiny_repository, "first") as one,
        start_server(tiny_repository, "other") as two,
    ):
        ports = {one.http_port, one.grpc_port, two.http_port, two.grpc_port}
        assert len(ports) == 4 and 0 not in ports
        for server in (one, two):
            reported = json.loads(
                server.log_path.with_name(server.log_path.name + ".ports").read_text()
            )
            assert reported == {"http": server.http_port, "grpc": server.grpc_port}
            ready = re.search(
                r"ready: http://127\.0\.0\.1:(\d+) .* 127\.0\.0\.1:(\d+)", server.log()
            )
            assert ready and (int(ready[1]), int(ready[2])) == (server.http_port, server.grpc_port)
            assert httpx.get(f"{server.http_url}/readyz").status_code == 200
            with connect_to(server, "grpc") as client:
                assert "vae-tiny" in {m.name for m in client.list_models()}
