"""What the Dockerfile's runtime stage does, without Docker: the project's wheel installed
with its serving dependencies alone (no torch, no train extra) into a fresh virtual
environment serves a model repository, answers /readyz and a sample, and passes the image's
HEALTHCHECK command.

Slow where pip must download the serving dependencies (ONNX Runtime above all); pip's cache
makes later runs quicker. Each stage's time is printed (``pytest -s``)."""

from __future__ import annotations

import base64
import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from k8s_render import ROOT
from latentserve.clients.local import free_port
from latentserve.server.frontends.rest.playground import ASSETS, ASSETS_PATH
from latentserve.server.settings import Settings
from PIL import Image

pytestmark = pytest.mark.slow
# Never part of the serving install: training's packages.
TRAIN_ONLY = {"torch", "transformers", "onnx", "onnxscript", "safetensors", "mlxtend"}


def run(command: list[str], timeout: float, **kwargs: object) -> str:
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
    print(f"{' '.join(command[:3])}...: {time.monotonic() - started:.1f} s")
    return done.stdout


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the project's wheel and its serving dependencies only."""
    work = tmp_path_factory.mktemp("runtime")
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q"]
        + ["--wheel-dir", str(work / "wheels"), str(ROOT)],
        timeout=300,
    )
    (wheel,) = (work / "wheels").glob("latentserve-*.whl")
    venv = work / "venv"
    run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], timeout=1200)
    return venv


@pytest.fixture(scope="module")
def served(
    runtime_venv: Path, tiny_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[subprocess.Popen, dict[str, str], Path]]:
    """``latentserve serve`` from the runtime venv, configured by env as in the image."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATENTSERVE_")}
    env.pop("PYTHONPATH", None)
    env |= {
        "LATENTSERVE_HOST": "127.0.0.1",
        "LATENTSERVE_REPOSITORY": str(tiny_repository),
        "LATENTSERVE_HTTP_PORT": str(free_port()),
        "LATENTSERVE_GRPC_PORT": str(free_port()),
        "OMP_NUM_THREADS": "1",
    }
    log_path = tmp_path_factory.mktemp("runtime_log") / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(runtime_venv / "bin" / "latentserve"), "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path_factory.mktemp("cwd"),  # not the source tree: only the wheel's code
        )
    yield process, env, log_path
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def wait_ready(url: str, process: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log_path.read_text()
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not ready in {timeout} s:\n{log_path.read_text()}")


def test_the_wheel_installs_without_training_packages(runtime_venv: Path) -> None:
    listed = run([str(runtime_venv / "bin" / "python"), "-m", "pip", "list"], timeout=60)
    installed = {line.split()[0].lower() for line in listed.splitlines()[2:]}
    assert "latentserve" in installed and "onnxruntime-gpu" in installed
    assert not installed & TRAIN_ONLY


def test_the_installed_wheel_serves_a_repository(
    served: tuple[subprocess.Popen, dict[str, str], Path], runtime_venv: Path
) -> None:
    process, env, log_path = served
    url = f"http://127.0.0.1:{env['LATENTSERVE_HTTP_PORT']}"
    started = time.monotonic()
    wait_ready(url, process, log_path, timeout=120)
    print(f"ready after {time.monotonic() - started:.1f} s")

    response = httpx.post(f"{url}/v1/models/vae-tiny/sample", json={"n": 2}, timeout=60)
    assert response.status_code == 200, response.text
    images = [Image.open(io.BytesIO(base64.b64decode(s))) for s in response.json()["images"]]
    assert [image.size for image in images] == [(28, 28), (28, 28)]

    # The playground's files are package data: the wheel must carry every one of them.
    for path in ["/", *(f"{ASSETS_PATH}/{name}" for name in ASSETS)]:
        assert httpx.get(f"{url}{path}", timeout=30).status_code == 200, path

    # The image's HEALTHCHECK command, from the same venv and env as the server.
    check = subprocess.run(
        [str(runtime_venv / "bin" / "latentserve"), "healthcheck"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, log_path.read_text()


def test_dockerfile_exposes_the_servers_ports() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    (exposed,) = re.findall(r"^EXPOSE (.+)$", dockerfile, re.M)
    defaults = Settings.model_fields
    ports = {defaults["http_port"].default, defaults["grpc_port"].default}
    assert {int(port) for port in exposed.split()} == ports
    assert re.search(r'^HEALTHCHECK .*\n?.*CMD \["latentserve", "healthcheck"\]', dockerfile, re.M)
