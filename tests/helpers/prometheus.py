"""A real Prometheus process for the integration tests: scrapes given targets every second,
optionally with rule files, and answers PromQL over its HTTP API."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from latentserve.clients.local import free_port

from helpers.tools import wait_until_answers


def get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


@contextmanager
def running_prometheus(
    binary: str, targets: Sequence[str], workdir: Path, rule_files: Sequence[Path] = ()
) -> Iterator[str]:
    """Prometheus (the program ``binary``) scraping ``targets`` (``host:port``) every second
    and evaluating ``rule_files`` every second; yields its base URL once it is ready."""
    port = free_port()
    config = workdir / "prometheus.yml"
    rules = "".join(f"  - {path}\n" for path in rule_files)
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        + (f"rule_files:\n{rules}" if rules else "")
        + "scrape_configs:\n  - job_name: latentserve\n    metrics_path: /metrics\n"
        + f"    static_configs:\n      - targets: {json.dumps(list(targets))}\n"
    )
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_answers(
                process,
                lambda: _ready(url),
                log_path,
                "prometheus",
                30,
                poll_s=0.2,
            )
            yield url
        finally:
            process.terminate()
            process.wait(timeout=15)


def query(prometheus: str, expression: str) -> list[dict]:
    """The instant vector ``expression`` gives now; fails on a query error."""
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    body = json.loads(get(url))
    assert body["status"] == "success", (expression, body)
    return body["data"]["result"]


def _ready(url: str) -> bool:
    try:
        return "Ready" in get(f"{url}/-/ready", timeout=1)
    except OSError:
        return False
