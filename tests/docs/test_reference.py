"""The generated REST and gRPC references cover every route the HTTP app answers and every
rpc the proto files declare, so a route or rpc added without reaching the docs fails here."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import api_reference  # noqa: E402


@pytest.fixture(scope="module")
def app():
    return api_reference.http_app()


@pytest.fixture(scope="module")
def rest_page(app) -> str:
    return api_reference.rest_reference(app)


def documented_routes(page: str) -> set[tuple[str, str]]:
    """(METHOD, path) of each route the page names as `METHOD /path`."""
    return set(re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`\s]*)`", page))


def test_the_rest_reference_names_every_route_the_app_answers(app, rest_page: str) -> None:
    documented = documented_routes(rest_page)
    # path_methods is what the app's own 405 handling is built from: an independent list
    for pattern, methods in app.state.path_methods:
        for method in methods - {"HEAD"}:
            assert any(m == method and pattern.fullmatch(p) for m, p in documented), (
                f"{method} {pattern.pattern} is missing from the REST reference"
            )
    assert len(app.state.path_methods) >= 30, "the app lists its routes"


def test_the_rest_reference_states_bounds_and_schemas(rest_page: str) -> None:
    # the sample parameters' bounds come from the pipelines' pydantic models
    assert "| `temperature` | number (≥ 0.001, ≤ 100.0) (or null) |" in rest_page
    assert "### SampleResponse" in rest_page and "### ErrorBody" in rest_page


def test_the_grpc_reference_names_every_rpc_of_the_protos() -> None:
    page = api_reference.grpc_reference()
    rpcs = api_reference.rpc_names_in_protos()
    assert {"Sample", "TextToImageEvents", "ModelInfer", "ReloadRepository"} <= rpcs
    missing = [rpc for rpc in rpcs if f"| `{rpc}` |" not in page]
    assert not missing, f"rpcs missing from the gRPC reference: {missing}"
    # the proto comments travel into the page
    assert "the first chunk is sent before the last image" in page


@pytest.mark.parametrize("page", ["rest", "grpc"])
def test_the_committed_reference_pages_are_current(app, page: str) -> None:
    render = {
        "rest": lambda: api_reference.rest_reference(app),
        "grpc": api_reference.grpc_reference,
    }
    committed = ROOT / "docs" / "reference" / f"{page}.md"
    assert committed.is_file() and committed.read_text() == render[page](), (
        f"{committed} is stale: run `make docs` (tools/api_reference.py) and commit it"
    )
