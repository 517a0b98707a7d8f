"""The operator files in deploy/ against the real thing: the alert rules pass their
promtool unit tests, and a real Prometheus scraping a real server under a little load of
every method runs every dashboard panel's and every rule's expression without error, with
data for the core panels."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from helpers.prometheus import get, query, running_prometheus
from helpers.server_process import ServerFactory, ServerProcess
from helpers.tools import require_tool
from latentserve.clients import GrpcClient
from PIL import Image

pytestmark = pytest.mark.slow

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "latentserve-dashboard.json"
RULES = DEPLOY / "prometheus" / "latentserve-rules.yml"
# Panels that show data only when something goes wrong (refusals, reloads, auth), and
# those of GPUs, which report only where NVML answers (no test machine has a GPU).
QUIET_PANELS = {
    "Shed load (429 / RESOURCE_EXHAUSTED)",
    "Reloads by outcome",
    "Refused for authentication",
    "GPU utilisation",
    "GPU memory",
}
# Grafana's variables, as the dashboard's "All" and a short range would set them.
VARIABLES = {"$__rate_interval": "30s", "$__range": "5m", "$model": ".*", "$method": ".*"}


def panels() -> list[dict]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def expression(target: dict) -> str:
    expr = target["expr"]
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown variable in {target['expr']}"
    return expr


def test_the_alert_rules_pass_their_unit_tests() -> None:
    promtool = require_tool("promtool")
    for command in (
        [promtool, "check", "rules", RULES.name],
        [promtool, "test", "rules", "latentserve-rules.test.yml"],
    ):
        done = subprocess.run(command, cwd=RULES.parent, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_dashboard_declares_its_variables_and_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    names = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert names["datasource"]["type"] == "datasource"
    assert {"model", "method"} <= set(names)
    for panel in panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]


@pytest.fixture(scope="module")
def server(
    tiny_repository: Path,
    text_repository: Path,
    tmp_path_factory: pytest.TempPathFactory,
    start_server: ServerFactory,
) -> Iterator[ServerProcess]:
    """One server with a VAE family (sample, encode, reconstruct, log-prob, interpolate)
    and a text-to-image model (jobs, steps, stages)."""
    repository = tmp_path_factory.mktemp("ops_repository")
    for source in (tiny_repository, text_repository):
        for model in source.iterdir():
            (repository / model.name).symlink_to(model)
    with start_server(repository, "ops", "") as running:
        yield running


def _png(seed: int) -> str:
    pixels = np.random.default_rng(seed).integers(0, 256, (28, 28), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _every_method(server: ServerProcess) -> None:
    """One call of each method over REST, a sample over gRPC, and a refused request."""
    with httpx.Client(base_url=server.http_url, timeout=60) as http:
        model = "/v1/models/vae-tiny"
        images = {"images": [_png(1), _png(2)]}
        for path, body in [
            (f"{model}/sample", {"n": 2, "seed": 1}),
            (f"{model}/encode", images),
            (f"{model}/reconstruct", images),
            (f"{model}/log-prob", images),
            (f"{model}/interpolate", {"seed_a": 1, "seed_b": 2, "frames": 3}),
            ("/v1/models/ldm-tiny/text-to-image", {"prompt": "a 3", "steps": 3, "seed": 1}),
        ]:
            assert http.post(path, json=body).status_code == 200, path
        job = http.post("/v1/jobs", json={"model": "vae-tiny", "params": {"n": 1}}).json()
        assert http.get(f"/v1/jobs/{job['job_id']}").status_code == 200
        assert http.post(f"{model}/sample", json={"n": 0}).status_code == 422
        http.get("/v1/models")
    with GrpcClient(server.grpc_target) as grpc_client:
        grpc_client.sample("vae-tiny", n=1, seed=3)


def test_every_panel_and_rule_runs_on_real_prometheus_with_data_for_the_core_panels(
    server: ServerProcess, tmp_path: Path
) -> None:
    binary = require_tool("prometheus")
    targets = [(p["title"], expression(t)) for p in panels() for t in p["targets"]]
    core = {title for title, _ in targets} - QUIET_PANELS
    address = [f"127.0.0.1:{server.http_port}"]
    with running_prometheus(binary, address, tmp_path, [RULES]) as prom:
        # Traffic between scrapes until each core panel has data (rate() needs two
        # scrapes that differ); bounded.
        deadline = time.monotonic() + 120
        while True:
            _every_method(server)
            results = [(title, query(prom, expr)) for title, expr in targets]  # no errors
            empty = core - {title for title, result in results if result}
            if not empty or time.monotonic() > deadline:
                break
        assert not empty, f"core panels without data: {sorted(empty)}"

        # Every rule is evaluated without error, and each recording rule records.
        recorded = re.findall(r"- record: (\S+)", RULES.read_text())
        deadline = time.monotonic() + 60
        while True:
            groups = json.loads(get(f"{prom}/api/v1/rules"))["data"]["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            never = "0001-01-01"  # what Prometheus reports for a rule not yet evaluated
            evaluated = all(not r.get("lastEvaluation", never).startswith(never) for r in rules)
            silent = [name for name in recorded if not query(prom, name)]
            if (evaluated and not silent) or time.monotonic() > deadline:
                break
            _every_method(server)
        assert len(rules) == len(re.findall(r"- (record|alert):", RULES.read_text()))
        assert evaluated and [r["name"] for r in rules if r["health"] != "ok"] == []
        assert silent == [], f"recording rules without data: {silent}"
