"""SIGTERM under mixed REST + gRPC load: no accepted request is lost.

Every request the server accepted is answered before it exits (nothing in flight at the
end, and the client received exactly as many successes as the server counted); every
other request was refused before acceptance (503 / UNAVAILABLE, or no connection)."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import pytest
from helpers.server_process import ServerProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from soak import SoakReport, drive  # noqa: E402

pytestmark = pytest.mark.slow

REFUSED_BEFORE_ACCEPTANCE = {
    "rest:503",
    "rest:ConnectError",  # the listener has closed
    "rest:RemoteProtocolError",  # an idle kept-alive connection closed as the request left
    "rest:ReadError",
    "grpc:UNAVAILABLE",
}


async def load_then_sigterm(server: ServerProcess) -> SoakReport:
    stop = asyncio.Event()
    report = SoakReport()
    load = asyncio.ensure_future(
        drive(server.http_url, server.grpc_target, "vae-tiny", stop, concurrency=8, report=report)
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while report.outcomes["rest:200"] + report.outcomes["grpc:OK"] < 100:
        assert loop.time() < deadline and not load.done(), report.outcomes
        await asyncio.sleep(0.05)
    server.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.process.wait, 60) == 0
    stop.set()
    await load
    return report


def test_sigterm_under_load_loses_no_accepted_request(
    tiny_repository: Path, tmp_path: Path
) -> None:
    server = ServerProcess(tiny_repository, tmp_path)
    try:
        report = asyncio.run(load_then_sigterm(server))
    finally:
        server.stop()
    log = server.log()
    stopped = re.search(r"stopped: requests answered: (.*); in flight: (\d+)", log)
    assert stopped, log
    answered = dict(pair.split("=") for pair in stopped.group(1).split())
    assert stopped.group(2) == "0", log  # nothing accepted was abandoned
    assert set(answered) == {"ok"}, answered  # nothing accepted failed either
    client_ok = report.outcomes["rest:200"] + report.outcomes["grpc:OK"]
    assert client_ok == int(answered["ok"]), (report.outcomes, answered)
    others = set(report.outcomes) - {"rest:200", "grpc:OK"}
    assert others <= REFUSED_BEFORE_ACCEPTANCE, report.outcomes
    print(f"sigterm under load: client saw {dict(report.outcomes)}; server {stopped.group(0)}")
