"""Schema-driven fuzzing of the REST API (schemathesis over the server's own OpenAPI
document): whatever a client sends, the answer is never a server error, and every answer
is what the document declares (status code, content type, body schema, headers, ``Allow``).
The examples, coverage and fuzzing phases each run to the end over every operation, and
every failing case is reported, not only the first of each operation."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest
from helpers.server_process import ServerProcess

pytestmark = pytest.mark.slow

# Cases per operation and phase: enough to reach each field's edges, few enough that the
# run takes well under a minute on two cores.
MAX_EXAMPLES = 40
PHASES = ("examples", "coverage", "fuzzing")
# Every case names a real model, so fuzzing reaches the inference handlers, not a 404.
# 504 is the documented answer when the client's own deadline passes first (a fuzzed
# ``X-Request-Timeout: 5e-324``), not a server fault: the server's own limits answer 503.
CONFIG = """
[parameters]
"path.model" = "vae-tiny"

[checks.not_a_server_error]
expected-statuses = ["1XX", "2XX", "3XX", "4XX", "504"]
"""
# Every check but positive_data_acceptance: one document serves every model kind (a body is
# any kind's parameters) and cannot state that a PNG must decode, so a schema-valid request
# is rightly refused by a model of another kind (vae-tiny takes no ``steps``).
CHECKS = ("--checks", "all", "--exclude-checks", "positive_data_acceptance")


def test_fuzzed_requests_get_answers_the_schema_declares(
    server: ServerProcess, http: httpx.Client, tmp_path: Path
) -> None:
    report = tmp_path / "fuzz.ndjson"
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    run = subprocess.run(
        [
            *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(config)),
            *("run", f"{server.http_url}/openapi.json", *CHECKS),
            "--continue-on-failure",  # every failing case of an operation, not the first
            *("--phases", ",".join(PHASES), "--max-examples", str(MAX_EXAMPLES)),
            "--generation-deterministic",  # the same cases every run: a failure reproduces
            # One worker: CPython 3.11 keeps the AST constructor's recursion depth in state
            # that threads share, so two workers drawing filtered strategies at once (each
            # has hypothesis parse its lambda's source) crash the coverage phase with
            # "SystemError: AST constructor recursion depth mismatch".
            *("--workers", "1", "--request-timeout", "60"),
            *("--report", "ndjson", "--report-ndjson-path", str(report)),
        ],
        cwd=tmp_path,  # schemathesis keeps a cache folder in its working directory
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    events = [json.loads(line) for line in report.read_text().splitlines()]

    errors = [e["NonFatalError"] for e in events if "NonFatalError" in e]
    assert not errors, json.dumps(errors)[:4000]
    ended = {
        finished["phase"]["name"]: finished["status"]
        for event in events
        if (finished := event.get("PhaseFinished"))
    }
    assert {phase: ended.get(phase) for phase in PHASES} == dict.fromkeys(PHASES, "success")

    operations = {
        f"{method.upper()} {path}"
        for path, item in http.get("/openapi.json").json()["paths"].items()
        for method in item
    }
    for phase in ("coverage", "fuzzing"):
        tested = {label for scenario_phase, label in _scenarios(events) if scenario_phase == phase}
        assert tested == operations, f"{phase} did not test {sorted(operations - tested)}"

    statuses = [
        interaction["response"]["status_code"]
        for event in events
        for interaction in _interactions(event)
    ]
    assert len(statuses) > 100, f"only {len(statuses)} requests were made"
    assert all(status < 500 or status == 504 for status in statuses)
    assert 200 in statuses and 422 in statuses  # valid and invalid requests were both made
    print(f"fuzz: {len(statuses)} requests, statuses {dict(Counter(statuses))}")


def _scenarios(events: list[dict]) -> list[tuple[str, str]]:
    """(phase, operation) of every finished scenario that ran."""
    return [
        (finished["phase"], finished["recorder"]["label"])
        for event in events
        if (finished := event.get("ScenarioFinished")) and finished["status"] != "skip"
    ]


def _interactions(event: dict) -> list[dict]:
    """The request/response pairs a finished scenario of the ndjson report recorded."""
    finished = event.get("ScenarioFinished") or {}
    recorded = finished.get("recorder", {}).get("interactions", {})
    return [i for i in recorded.values() if i.get("response")]
