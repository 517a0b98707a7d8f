"""Process-level behaviour: torch-free serving path, draining on SIGTERM, refusing tampering."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from helpers.server_process import BLOCK_TORCH, ServerFactory, ServerProcess, metric, until
from latentserve.server.codecs import encode_base64, encode_png

pytestmark = pytest.mark.slow

IMPORT_ALL = """
import importlib, pkgutil, sys
import latentserve.server as server
from latentserve.cli import build_parser
imported = 0
for module in pkgutil.walk_packages(server.__path__, prefix="latentserve.server."):
    importlib.import_module(module.name)
    imported += 1
assert imported > 40, imported  # every layer's modules, not only the top-level ones
build_parser().parse_args(["serve", "--repository", "models"])
try:
    import torch
except ImportError:
    pass
else:
    sys.exit("the torch blocker did not work")
assert not any(name == "torch" or name.startswith("torch.") for name in sys.modules)
print("torch-free")
"""


def test_every_server_module_imports_without_torch(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCK_TORCH)
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL],
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "torch-free" in result.stdout, result.stderr


def test_sigterm_drains_accepted_requests_then_exits(tiny_repository: Path, tmp_path: Path) -> None:
    server = ServerProcess(tiny_repository, tmp_path)  # ae-tiny waits 1.5 s to batch
    zeros = encode_base64(encode_png(np.zeros((28, 28, 1), np.uint8)))
    results: list[httpx.Response] = []
    url = f"{server.http_url}/v1/models/ae-tiny/encode"
    inflight = threading.Thread(
        target=lambda: results.append(httpx.post(url, json={"images": [zeros]}, timeout=30))
    )
    inflight.start()
    with httpx.Client(base_url=server.http_url, timeout=30) as http:
        until(lambda: metric(http, "latentserve_requests_in_flight", protocol="rest") >= 1)
    server.process.send_signal(signal.SIGTERM)
    inflight.join()
    assert server.process.wait(30) == 0, server.log()
    assert results[0].status_code == 200, results[0].text
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.http_url}/healthz", timeout=2)
    assert "draining" in server.log()


def test_a_tampered_graph_stops_startup_with_a_clear_error(
    tiny_repository: Path, tmp_path: Path
) -> None:
    repository = tmp_path / "repo"
    shutil.copytree(tiny_repository, repository)
    decoder = repository / "vae-tiny" / "1" / "decoder.onnx"
    decoder.write_bytes(decoder.read_bytes() + b"\x00")
    with pytest.raises(RuntimeError, match="does not match manifest") as err:
        ServerProcess(repository, tmp_path)
    assert "exited with code 2" in str(err.value)


def test_every_model_is_warmed_up_before_the_server_turns_ready(
    tiny_repository: Path, start_server: ServerFactory
) -> None:
    # start_server returns once /readyz answers 200.
    with (
        start_server(tiny_repository, "warm_start") as server,
        httpx.Client(base_url=server.http_url, timeout=30) as http,
    ):
        assert http.get("/readyz").status_code == 200
        models = [
            f"{m['name']}@{v}"
            for m in http.get("/v1/models").json()["models"]
            for v in m["versions"]
        ]
        # No client has called yet, but every version's graphs already ran a batch, and its
        # warm-up time is reported.
        for model in models:
            assert metric(http, "latentserve_batch_items_count", model=model) > 0, model
            assert metric(http, "latentserve_model_warmup_seconds", model=model) > 0, model
        assert metric(http, "latentserve_requests_total", method="sample") == 0
