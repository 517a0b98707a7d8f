"""External programs some tests drive (Prometheus, promtool, wrk, Chromium).

On a developer's machine a missing program skips the test that needs it; on CI (the ``CI``
environment variable set) it fails the run, so a broken tool install cannot turn the tests
that need it into silent skips."""

from __future__ import annotations

import os
import shutil

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
