"""REST load through ``wrk`` (compiled, event-driven), so the load client barely competes
with the server for the machine's cores. wrk keeps C connections busy back to back.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{body}'
"""

_SOCKET_ERRORS = r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def run_wrk(
    base_url: str, model: str, n: int, concurrency: int, duration: float, warmup: float
) -> dict:
    """One measured wrk run (after an unmeasured warm-up run) against ``/sample``."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk not found: apt-get install wrk (or run `make bench`)")
    url = f"{base_url.rstrip('/')}/v1/models/{model}/sample"
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "sample.lua"
        script.write_text(_LUA.format(body=json.dumps({"n": n})))
        if warmup > 0:
            _wrk(url, script, concurrency, warmup)
        output = _wrk(url, script, concurrency, duration)
    return parse_wrk(output, n)


def _wrk(url: str, script: Path, concurrency: int, duration: float) -> str:
    command = [
        "wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s",
        "--timeout", "30s", "--latency", "-s", str(script), url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return done.stdout


def parse_wrk(output: str, n: int) -> dict:
    """Requests/s, p50/p99 and failures from wrk's ``--latency`` report."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    total = int(re.search(r"(\d+) requests in", output).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(_SOCKET_ERRORS, output)
    failed = int(bad.group(1)) if bad else 0
    errors = failed + (sum(int(x) for x in sockets.groups()) if sockets else 0)
    ok = total - failed
    return {
        "client": "wrk (1 thread)",
        "requests": ok,
        "errors": errors,
        "images_per_s": rps * n * (ok / total if total else 0.0),
        "p50_ms": _percentile(output, "50%"),
        "p99_ms": _percentile(output, "99%"),
    }


def _percentile(output: str, label: str) -> float:
    match = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    return float(match.group(1)) * _UNITS_MS[match.group(2)] if match else float("nan")
