"""GPU utilisation and memory gauges on ``/metrics``, read from NVML at each scrape.

NVML (``nvidia-ml-py``, imported as ``pynvml``) answers only where an NVIDIA driver is
installed. Where it does not initialise the gauges are simply absent: the server says so in
one log line at start and serves as usual. The values are read when Prometheus scrapes, not
polled in the background, so they are as fresh as the scrape and cost nothing between.

The ``gpu`` label is NVML's device index, which follows the PCI bus order; CUDA numbers
devices fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` is set, so set it for the
``instances`` device ids and these indices to name the same cards.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import ModuleType

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

_GAUGES = {
    "utilization": (
        "latentserve_gpu_utilization_percent",
        "Percent of the last sample period in which the GPU ran a kernel (NVML).",
    ),
    "memory_used": ("latentserve_gpu_memory_used_bytes", "GPU memory in use (NVML)."),
    "memory_total": ("latentserve_gpu_memory_total_bytes", "GPU memory installed (NVML)."),
}


def _families() -> dict[str, GaugeMetricFamily]:
    return {key: GaugeMetricFamily(name, d, labels=["gpu"]) for key, (name, d) in _GAUGES.items()}


class GpuCollector(Collector):
    """Every NVML device's utilisation and memory, read at collection time."""

    def __init__(self, nvml: ModuleType) -> None:
        self._nvml = nvml
        self._warned = False

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from _families().values()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        nvml = self._nvml
        families = _families()
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as exc:
            self._warn("cannot count the GPUs", exc)
            count = 0
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            except nvml.NVMLError as exc:  # a device that fell off the bus: skip it
                self._warn(f"cannot read GPU {index}", exc)
                continue
            gpu = [str(index)]
            families["utilization"].add_metric(gpu, float(rates.gpu))
            families["memory_used"].add_metric(gpu, float(memory.used))
            families["memory_total"].add_metric(gpu, float(memory.total))
        yield from (family for family in families.values() if family.samples)

    def _warn(self, what: str, exc: Exception) -> None:
        # Once: a scrape every few seconds would otherwise repeat it for good.
        if not self._warned:
            self._warned = True
            log.warning("GPU metrics: %s (%s)", what, exc)


def register_gpu_metrics(registry: CollectorRegistry, nvml: ModuleType | None = None) -> bool:
    """Add the GPU gauges to ``registry`` if NVML initialises; else log why, once, and
    add nothing. ``nvml`` replaces the ``pynvml`` module (tests inject a fake one)."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            log.info("GPU metrics off: nvidia-ml-py is not installed")
            return False
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        log.info("GPU metrics off: NVML did not initialise (%s)", exc)
        return False
    registry.register(GpuCollector(nvml))
    log.info("GPU metrics on: %d device(s) reported by NVML", _device_count(nvml))
    return True


def _device_count(nvml: ModuleType) -> int:
    try:
        return int(nvml.nvmlDeviceGetCount())
    except nvml.NVMLError:
        return 0
