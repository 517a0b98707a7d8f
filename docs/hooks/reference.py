"""MkDocs hook: adds reference/rest.md and reference/grpc.md to the site, rendered at build
time by tools/api_reference.py from the server's OpenAPI document and the .proto files."""

from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.structure.files import File, Files

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import api_reference  # noqa: E402


def on_files(files: Files, config) -> Files:
    files.append(
        File.generated(config, "reference/rest.md", content=api_reference.rest_reference())
    )
    files.append(
        File.generated(config, "reference/grpc.md", content=api_reference.grpc_reference())
    )
    return files
