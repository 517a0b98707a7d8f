"""Two instances of a model in a real server (torch blocked) on loopback: under concurrent
load both instances run batches, one-shot (VAE sampler) and multi-step (DDPM denoiser)
alike, and every fixed seed gives the very same PNG bytes as a server with one instance.
Also: without NVML, /metrics carries no GPU series and the server starts as usual; GPU
device ids on a machine without CUDA stop the server at load, naming the setting."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from helpers.server_process import ServerFactory, ServerProcess, metric
from latentserve.server.repository.runtime import cuda_device_present

pytestmark = pytest.mark.slow

VAE, DDPM = "vae-tiny", "ddpm-tiny"
# One batch at a time per instance and small batches: concurrent requests need several
# batches, which two instances run side by side.
BATCHING = "max_batch_size = 2\nmax_concurrent_batches = 1\nmax_queue_delay_ms = 2\n"


def config(instances: int) -> str:
    return "".join(f"[models.{m}]\n{BATCHING}instances = {instances}\n" for m in (VAE, DDPM))


def vae_body(seed: int) -> dict:
    return {"n": 2, "seed": seed}


def ddpm_body(seed: int) -> dict:
    return {"n": 1, "seed": seed, "steps": 4, "sampler": "ddim", "class_label": seed % 10}


@pytest.fixture(scope="module")
def repository(
    tiny_repository: Path, diffusion_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    root = tmp_path_factory.mktemp("instances_repository")
    for source, model in ((tiny_repository, VAE), (diffusion_repository, DDPM)):
        (root / model).mkdir()
        (root / model / "1").symlink_to(source / model / "1")  # version 1 only
    return root


@pytest.fixture(scope="module")
def two(repository: Path, start_server: ServerFactory) -> Iterator[ServerProcess]:
    with start_server(repository, "two_instances", config(2)) as server:
        yield server


@pytest.fixture(scope="module")
def one(repository: Path, start_server: ServerFactory) -> Iterator[ServerProcess]:
    with start_server(repository, "one_instance", config(1)) as server:
        yield server


def images(server: ServerProcess, bodies: dict[str, list[dict]]) -> dict[tuple[str, int], list]:
    """Every body sent at once (one thread each); the images by (model, seed)."""
    calls = [(model, body) for model, some in bodies.items() for body in some]
    with httpx.Client(base_url=server.http_url, timeout=120) as http:

        def post(model: str, body: dict) -> list:
            answer = http.post(f"/v1/models/{model}/sample", json=body)
            assert answer.status_code == 200, answer.text
            return answer.json()["images"]

        with ThreadPoolExecutor(len(calls)) as pool:
            futures = [pool.submit(post, model, body) for model, body in calls]
            return {(m, b["seed"]): f.result() for (m, b), f in zip(calls, futures, strict=True)}


def batches(server: ServerProcess, model: str, graph: str, instance: str) -> float:
    with httpx.Client(base_url=server.http_url, timeout=30) as http:
        return metric(
            http,
            "latentserve_batch_items_count",
            model=f"{model}@1",
            graph=graph,
            model_instance=instance,
        )


LOAD = {VAE: [vae_body(s) for s in range(8)], DDPM: [ddpm_body(s) for s in range(4)]}


def test_both_instances_run_batches_under_concurrent_load(two: ServerProcess) -> None:
    graphs = [(VAE, "sampler"), (DDPM, "denoiser")]
    before = {(m, g, i): batches(two, m, g, i) for m, g in graphs for i in "01"}
    images(two, LOAD)  # 8 + 4 requests at once: several batches each, in flight together
    for (model, graph, instance), count in before.items():
        assert batches(two, model, graph, instance) > count, (model, graph, instance)
    # Instances are indexed below the configured count: no third label value.
    assert batches(two, VAE, "sampler", "2") == 0


def test_fixed_seeds_give_the_same_png_bytes_as_one_instance(
    two: ServerProcess, one: ServerProcess
) -> None:
    together = images(two, LOAD)
    alone = images(one, LOAD)
    assert together.keys() == alone.keys() and len(together) == 12
    for key, pngs in together.items():
        assert pngs == alone[key], key


def test_without_nvml_metrics_have_no_gpu_series_and_the_server_serves(
    two: ServerProcess,
) -> None:
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass  # the case under test: no NVIDIA driver here
    else:
        pytest.skip("NVML initialises on this machine: the GPU gauges are present")
    with httpx.Client(base_url=two.http_url, timeout=30) as http:
        assert http.get("/readyz").status_code == 200
        assert "latentserve_gpu_" not in http.get("/metrics").text
    assert two.log().count("GPU metrics off: NVML did not initialise") == 1


@pytest.mark.skipif(cuda_device_present(), reason="device ids are valid where CUDA is")
def test_gpu_device_ids_without_cuda_stop_the_server_naming_the_setting(
    repository: Path, tmp_path: Path
) -> None:
    toml = f"[models.{VAE}]\ninstances = [0, 1]\n"
    with pytest.raises(RuntimeError, match="exited with code") as stopped:
        ServerProcess(repository, tmp_path, toml)
    assert f"setting 'instances' of model {VAE}" in str(stopped.value)
    assert "no CUDA device is usable here" in str(stopped.value)
