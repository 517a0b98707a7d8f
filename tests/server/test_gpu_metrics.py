"""The GPU gauges, read from NVML at each scrape. No test machine here has a GPU, so the
collector is driven by a fake ``pynvml`` module with the same functions and error class;
that NVML's absence leaves /metrics without GPU series is checked against a real server in
test_instances_integration.py."""

from __future__ import annotations

import logging
from types import ModuleType, SimpleNamespace

import pytest
from latentserve.server.gpu_metrics import register_gpu_metrics
from prometheus_client import CollectorRegistry, generate_latest

GIB = 1024**3


class FakeNVMLError(Exception):
    pass


def fake_nvml(
    devices: list[tuple[int, int, int]], *, init_fails: bool = False, broken: int | None = None
) -> ModuleType:
    """A ``pynvml`` stand-in: one (utilisation %, used bytes, total bytes) per device; its
    values can be changed between scrapes through ``devices``; ``broken`` fails a device."""
    nvml = ModuleType("fake_pynvml")
    nvml.NVMLError = FakeNVMLError

    def init() -> None:
        if init_fails:
            raise FakeNVMLError("NVML Shared Library Not Found")

    def handle(index: int) -> int:
        if index == broken:
            raise FakeNVMLError("GPU is lost")
        return index

    nvml.nvmlInit = init
    nvml.nvmlDeviceGetCount = lambda: len(devices)
    nvml.nvmlDeviceGetHandleByIndex = handle
    nvml.nvmlDeviceGetUtilizationRates = lambda h: SimpleNamespace(gpu=devices[h][0], memory=0)
    nvml.nvmlDeviceGetMemoryInfo = lambda h: SimpleNamespace(
        used=devices[h][1], total=devices[h][2], free=devices[h][2] - devices[h][1]
    )
    return nvml


def value(registry: CollectorRegistry, name: str, gpu: str) -> float | None:
    return registry.get_sample_value(name, {"gpu": gpu})


def test_each_device_reports_utilisation_and_memory_read_at_every_scrape() -> None:
    devices = [(35, 2 * GIB, 80 * GIB), (90, 70 * GIB, 80 * GIB)]
    registry = CollectorRegistry()
    assert register_gpu_metrics(registry, fake_nvml(devices))
    assert value(registry, "latentserve_gpu_utilization_percent", "0") == 35
    assert value(registry, "latentserve_gpu_utilization_percent", "1") == 90
    assert value(registry, "latentserve_gpu_memory_used_bytes", "1") == 70 * GIB
    assert value(registry, "latentserve_gpu_memory_total_bytes", "0") == 80 * GIB
    devices[0] = (5, 3 * GIB, 80 * GIB)  # the next scrape sees the new values
    assert value(registry, "latentserve_gpu_utilization_percent", "0") == 5
    assert value(registry, "latentserve_gpu_memory_used_bytes", "0") == 3 * GIB


def test_without_nvml_nothing_is_registered_and_one_line_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    with caplog.at_level(logging.INFO, logger="latentserve.server.gpu_metrics"):
        assert not register_gpu_metrics(registry, fake_nvml([], init_fails=True))
    assert [r.getMessage() for r in caplog.records] == [
        "GPU metrics off: NVML did not initialise (NVML Shared Library Not Found)"
    ]
    assert b"latentserve_gpu" not in generate_latest(registry)


def test_a_device_that_cannot_be_read_is_left_out_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    register_gpu_metrics(registry, fake_nvml([(10, GIB, 8 * GIB), (20, GIB, 8 * GIB)], broken=0))
    with caplog.at_level(logging.WARNING, logger="latentserve.server.gpu_metrics"):
        for _ in range(3):
            text = generate_latest(registry).decode()
    assert 'gpu="0"' not in text and 'latentserve_gpu_utilization_percent{gpu="1"} 20.0' in text
    assert len(caplog.records) == 1 and "cannot read GPU 0" in caplog.records[0].getMessage()
