"""Server-only fixtures (the shared ``tiny_repository`` comes from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from server_process import ServerProcess


@pytest.fixture(scope="module")
def server(
    tiny_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    process = ServerProcess(tiny_repository, tmp_path_factory.mktemp("server"))
    yield process
    assert process.stop() == 0, process.log()
