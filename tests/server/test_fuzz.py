"""Schema-driven fuzzing of the REST API (schemathesis over the server's own OpenAPI
document, all its phases): whatever a client sends, the answer is never a 5xx."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from helpers.server_process import ServerProcess

pytestmark = pytest.mark.slow

# Cases per operation and phase: enough to reach each field's edges, few enough that the
# run takes well under a minute on two cores.
MAX_EXAMPLES = 40


def test_no_fuzzed_request_gets_a_server_error(server: ServerProcess, tmp_path: Path) -> None:
    report = tmp_path / "fuzz.ndjson"
    # Every case names a real model, so fuzzing reaches the inference handlers, not a 404.
    config = tmp_path / "schemathesis.toml"
    config.write_text('[parameters]\n"path.model" = "vae-tiny"\n')
    run = subprocess.run(
        [
            *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(config)),
            *("run", f"{server.http_url}/openapi.json"),
            *("--checks", "not_a_server_error", "--max-examples", str(MAX_EXAMPLES)),
            "--generation-deterministic",  # the same cases every run: a failure reproduces
            *("--workers", "2", "--request-timeout", "60"),
            *("--report", "ndjson", "--report-ndjson-path", str(report)),
        ],
        cwd=tmp_path,  # schemathesis keeps a cache folder in its working directory
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    statuses = [
        interaction["response"]["status_code"]
        for line in report.read_text().splitlines()
        for interaction in _interactions(json.loads(line))
    ]
    assert len(statuses) > 100, f"only {len(statuses)} requests were made"
    assert all(status < 500 for status in statuses)
    assert 200 in statuses and 422 in statuses  # valid and invalid requests were both made
    print(f"fuzz: {len(statuses)} requests, statuses {dict(Counter(statuses))}")


def _interactions(event: dict) -> list[dict]:
    """The request/response pairs a finished scenario of the ndjson report recorded."""
    finished = event.get("ScenarioFinished") or {}
    recorded = finished.get("recorder", {}).get("interactions", {})
    return [i for i in recorded.values() if i.get("response")]
