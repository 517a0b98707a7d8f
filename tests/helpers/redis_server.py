"""A real ``redis-server`` for the job store's tests: on a unix socket in a temporary
folder (no TCP port at all), no persistence, stopped on exit."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import redis

from helpers.tools import wait_until_answers


@contextmanager
def running_redis(binary: str, workdir: Path, config: Sequence[str] = ()) -> Iterator[str]:
    """Run ``binary`` (redis-server) in ``workdir``; yields its ``unix://`` URL once it
    answers PING. ``config`` (command-line directives, e.g. a manifest's) overrides the
    defaults here, but never the socket: it listens on no TCP port whatever it says."""
    sock = workdir / "redis.sock"
    log_path = workdir / "redis.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                "--save", "",
                "--appendonly", "no",
                *config,
                "--port", "0",
                "--unixsocket", str(sock),
                "--dir", str(workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"unix://{sock}"
        try:
            client = redis.Redis.from_url(url)
            wait_until_answers(process, lambda: _pings(client), log_path, "redis-server", 20)
            client.close()
            yield url
        finally:
            process.terminate()
            process.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
