"""``latentserve sample`` and ``latentserve models`` as a user runs them, against a real server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.server_process import ServerProcess
from latentserve.clients import RestClient
from PIL import Image

pytestmark = pytest.mark.slow


def _latentserve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "latentserve.cli", *args], capture_output=True, text=True, timeout=60
    )


def _tiles(grid: Image.Image, count: int, columns: int, size: tuple[int, int]) -> list:
    """The first ``count`` tiles of a ``make_grid`` sheet (2-pixel padding) as arrays."""
    width, height = size
    tiles = []
    for index in range(count):
        row, column = divmod(index, columns)
        left, top = 2 + column * (width + 2), 2 + row * (height + 2)
        tiles.append(np.asarray(grid.crop((left, top, left + width, top + height))))
    return tiles


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_sample_writes_a_grid_of_the_seeded_samples(
    live_server: ServerProcess, tmp_path: Path, transport: str
) -> None:
    url = live_server.http_url if transport == "rest" else live_server.grpc_url
    out = tmp_path / "grid.png"
    done = _latentserve(
        "sample", "--url", url, "--model", "vae-tiny", "-n", "6", "--seed", "42", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert "seed 42" in done.stdout and str(out) in done.stdout

    with RestClient(live_server.http_url) as client:
        expected = client.sample("vae-tiny", n=6, seed=42).images
    grid = Image.open(out)
    width, height = expected[0].size
    assert grid.size == (3 * (width + 2) + 2, 2 * (height + 2) + 2)  # 6 images: 3 x 2
    for tile, image in zip(_tiles(grid, 6, 3, (width, height)), expected, strict=True):
        np.testing.assert_array_equal(tile, np.asarray(image.convert(grid.mode)))  # the SDK's


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_sample_with_progress_and_params(vq_server: ServerProcess, tmp_path, transport) -> None:
    url = vq_server.http_url if transport == "rest" else vq_server.grpc_url
    out = tmp_path / "grid.png"
    done = _latentserve(
        "sample", "--url", url, "--model", "vqvae-tiny", "-n", "2", "--seed", "3",
        "--param", "temperature=0.5", "--progress", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "49/49" in done.stderr  # the progress bar reached the last code position

    with RestClient(vq_server.http_url) as client:
        expected = client.sample("vqvae-tiny", n=2, seed=3, temperature=0.5).images
    tiles = _tiles(Image.open(out), 2, 2, expected[0].size)
    for tile, image in zip(tiles, expected, strict=True):
        np.testing.assert_array_equal(tile, np.asarray(image.convert("L")))


def test_sample_refuses_a_parameter_the_model_does_not_take(live_server, tmp_path) -> None:
    done = _latentserve(
        "sample", "--url", live_server.grpc_url, "--model", "vae-tiny", "--steps", "5",
        "--out", str(tmp_path / "x.png"),
    )  # fmt: skip
    assert done.returncode == 1
    assert "steps" in done.stderr and "Traceback" not in done.stderr


def test_models_lists_every_model(live_server: ServerProcess) -> None:
    done = _latentserve("models", "--url", live_server.grpc_url)
    assert done.returncode == 0, done.stderr
    assert "vae-tiny@2" in done.stdout and "ae-tiny@" in done.stdout
    assert "1,2" in done.stdout  # the versions column


def test_sample_reports_server_errors_in_one_line(live_server: ServerProcess, tmp_path) -> None:
    done = _latentserve(
        "sample", "--url", live_server.http_url, "--model", "nope", "--out", str(tmp_path / "x.png")
    )
    assert done.returncode == 1
    assert "nope" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_interpolate_writes_a_strip_and_exits_0(
    live_server: ServerProcess, tmp_path: Path, transport: str
) -> None:
    url = live_server.http_url if transport == "rest" else live_server.grpc_url
    out = tmp_path / "strip.png"
    done = _latentserve(
        "interpolate", "--url", url, "--model", "vae-tiny", "--seed-a", "1", "--seed-b", "2",
        "--frames", "4", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "4 frames from vae-tiny@" in done.stdout and "seeds 1 -> 2" in done.stdout
    with RestClient(live_server.http_url) as client:
        width, height = client.sample("vae-tiny", n=1, seed=1).images[0].size
    assert Image.open(out).size == (4 * (width + 2) + 2, height + 4)


@pytest.mark.parametrize(
    ("model", "frames", "message"),
    [
        ("ae-tiny", "4", "interpolate"),  # no prior to interpolate in
        ("no-such-model", "4", "no-such-model"),
        ("vae-tiny", "1", "frames"),
    ],
)
def test_interpolate_reports_server_errors_in_one_line_and_exits_1(
    live_server: ServerProcess, tmp_path: Path, model: str, frames: str, message: str
) -> None:
    out = tmp_path / "strip.png"
    done = _latentserve(
        "interpolate", "--url", live_server.grpc_url, "--model", model, "--frames", frames,
        "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("latentserve interpolate: ") and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not out.exists()
