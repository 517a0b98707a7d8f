"""External programs some tests drive (Prometheus, promtool, wrk, Chromium).

On a developer's machine a missing program skips the test that needs it; on CI (the ``CI``
environment variable set) it fails the run, so a broken tool install cannot turn the tests
that need it into silent skips."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest


def require_tool(name: str, install_hint: str = "make test-tools installs it") -> str:
    """The path of the program ``name``; skips the calling test without it, or fails it
    when ``CI`` is set."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} is not installed ({install_hint})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must provide it", pytrace=False)
    pytest.skip(message)


def until(
    predicate: Callable[[], bool],
    timeout: float = 30.0,
    poll_s: float = 0.05,
    failure: str = "condition not reached in time",
) -> None:
    """Poll a condition (a metric, a started program answering) until it holds; fail with
    ``failure`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, failure
        time.sleep(poll_s)


def wait_until_answers(
    process: subprocess.Popen[bytes],
    answers: Callable[[], bool],
    log_path: Path,
    what: str,
    timeout_s: float,
    poll_s: float = 0.02,
) -> None:
    """Poll ``answers`` until it is true; fail with the program's log if the program exits
    first, or naming ``what`` after ``timeout_s``."""

    def running_and_answers() -> bool:
        assert process.poll() is None, log_path.read_text()
        return answers()

    until(running_and_answers, timeout_s, poll_s, f"{what} did not start")
