"""Every shell example of the README and docs/ that talks to a server runs against a live
one, so none goes stale: the documented addresses are replaced by the test server's, each
page's blocks run in order in a folder of their own, and each must exit 0 and print what
its console block says it prints.

The server serves tiny models under the documented names (vae-mnist, ldm-mnist, ...), built
by the real train + export code, with the settings the examples assume (an admin token, a
CORS origin)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.doc_examples import (
    TALKS_TO_SERVER,
    Block,
    console_steps,
    localize,
    missing_output,
    shell_blocks,
)
from helpers.server_process import ServerFactory, ServerProcess

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# v2.md last: its repository example unloads vae-mnist (and loads it back).
PAGES = [ROOT / "README.md"] + sorted(
    (p for p in (ROOT / "docs").rglob("*.md") if p.name != "v2.md"), key=str
)
PAGES.append(ROOT / "docs" / "v2.md")
# The documented names, served by tiny configs of the same families.
MODELS = [
    ("vae-tiny", "vae-mnist"),
    ("ldm-tiny", "ldm-mnist"),
    ("ddpm-tiny", "ddpm-mnist"),
    ("stylegan2-tiny", "stylegan2-mnist"),
    ("vqvae-tiny", "vqvae-mnist"),
]
ADMIN_TOKEN = "docs-examples-admin-token"
SERVER_TOML = 'cors_allow_origins = ["https://app.example.com"]\n'
BLOCK_TIMEOUT_S = 120


def blocks_to_run(page: Path) -> list[Block]:
    return [b for b in shell_blocks(page) if b.mode == "run"]


@pytest.fixture(scope="module")
def docs_server(
    start_server: ServerFactory, tiny_runs, tmp_path_factory: pytest.TempPathFactory
) -> ServerProcess:
    repository = tmp_path_factory.mktemp("docs_repository")
    tiny_runs.export(repository, [(config, name, "1", 0) for config, name in MODELS])
    tokens = tmp_path_factory.mktemp("docs_admin") / "admin-tokens"
    tokens.write_text(f"{ADMIN_TOKEN}\n")
    extra = ["--admin-tokens-file", str(tokens)]
    with start_server(repository, "docs-server", config=SERVER_TOML, extra_args=extra) as server:
        yield server


def run_block(block: Block, server: ServerProcess, cwd: Path) -> None:
    """Run a block in ``cwd``. A bash block shows no output to check, so its curl calls
    fail on an HTTP error (``fail-with-body`` in a curlrc); a console block states the
    output, errors included, and is checked against it."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "ADMIN_TOKEN": ADMIN_TOKEN,
    }
    if block.language != "console":
        (cwd / ".curlrc").write_text("fail-with-body\n")
        env["CURL_HOME"] = str(cwd)
    steps = console_steps(block.text) if block.language == "console" else [(block.text, [])]
    for command, expected in steps:
        script = localize(command, server.http_port, server.grpc_port)
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
        )
        shown = f"{block.where}\n$ {script}\n{done.stdout}{done.stderr}"
        assert done.returncode == 0, f"exit {done.returncode} at {shown}"
        missing = missing_output(expected, done.stdout + done.stderr)
        assert missing is None, f"expected {missing!r} in the output of {shown}"


RUNNABLE = [page for page in PAGES if blocks_to_run(page)]


@pytest.mark.parametrize("page", RUNNABLE, ids=[str(p.relative_to(ROOT)) for p in RUNNABLE])
def test_the_shell_examples_of_a_page_run_against_a_live_server(
    page: Path, docs_server: ServerProcess, tmp_path: Path
) -> None:
    for block in blocks_to_run(page):
        run_block(block, docs_server, tmp_path)


def test_every_shell_example_that_talks_to_a_server_is_run_or_says_why_not() -> None:
    unmarked = [
        block.where
        for page in PAGES
        for block in shell_blocks(page)
        if block.mode is None and TALKS_TO_SERVER.search(block.text)
    ]
    assert not unmarked, (
        "shell examples that talk to a server need <!-- docs-test: run --> (or "
        f"<!-- docs-test: skip: REASON -->) on the line before: {unmarked}"
    )
    assert sum(len(blocks_to_run(page)) for page in PAGES) >= 15


def test_a_console_block_checks_its_output_in_order() -> None:
    steps = console_steps('$ echo a \\\n  b\nfirst ... line\n...\n{"x": 1}\n$ true\n')
    assert steps == [("echo a \\\n  b", ["first ... line", "...", '{"x": 1}']), ("true", [])]
    expected = steps[0][1]
    assert missing_output(expected, 'first  long line\nnoise\n{"x": 1}\n') is None
    assert missing_output(expected, '{"x": 1}\nfirst long line\n') == '{"x": 1}'
    assert missing_output(["n: must be 64"], "n: must be 65") == "n: must be 64"
