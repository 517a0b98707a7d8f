"""Several instances of a model: the ``instances`` setting is checked when settings and
models load, each instance opens its own copy of every graph (on its CUDA device when ids
are given), and the batcher runs batches on the instances side by side."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers.fakes import FAKES, Recorder, fake_manifest, items
from latentserve.server.engine.batcher import Batcher, BatchFailed
from latentserve.server.metrics import ServerMetrics
from latentserve.server.pipelines import build_pipeline
from latentserve.server.repository import runtime
from latentserve.server.repository.store import load_model
from latentserve.server.repository.warmup import warm_up
from latentserve.server.settings import Settings, load_settings
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from latentserve.manifest import GraphSpec


class Instance:
    """An echo graph that counts its batches; its runs can be made to meet another's at a
    barrier, which breaks (failing the batch) unless two runs overlap in time."""

    backend = "fake"
    providers = ["FakeProvider"]

    def __init__(self, barrier: threading.Barrier | None = None) -> None:
        self.barrier = barrier
        self.batches = 0

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.barrier is not None:
            self.barrier.wait()
        self.batches += 1
        return {"y": inputs["x"] * 2}


def batcher(instances: list[Instance], metrics: ServerMetrics | None = None) -> Batcher:
    return Batcher(
        instances,
        max_batch_size=1,
        max_queue_delay_ms=0,
        max_queue_size=16,
        max_concurrent_batches=1,
        model="m@1",
        graph="decoder",
        metrics=metrics,
    )


async def submit_all(b: Batcher, count: int) -> list[dict[str, np.ndarray]]:
    try:
        return await asyncio.gather(*(b.submit(items(i, 1)) for i in range(count)))
    finally:
        await b.close()


def test_two_instances_run_two_batches_at_once_each_on_its_own_graph() -> None:
    meet = threading.Barrier(2, timeout=10)
    pair = [Instance(meet), Instance(meet)]
    results = asyncio.run(submit_all(batcher(pair), 2))
    assert [float(r["y"][0, 0]) for r in results] == [0.0, 2.0]
    assert [i.batches for i in pair] == [1, 1]


def test_one_instance_with_one_slot_runs_its_batches_one_after_the_other() -> None:
    # The control of the test above: the same barrier breaks when runs cannot overlap.
    alone = Instance(threading.Barrier(2, timeout=1))
    with pytest.raises(BatchFailed):
        asyncio.run(submit_all(batcher([alone]), 2))


def test_batches_are_counted_per_instance_and_spread_over_idle_instances() -> None:
    metrics = ServerMetrics(CollectorRegistry())
    pair = [Instance(), Instance()]
    b = batcher(pair, metrics)

    async def one_at_a_time() -> None:
        try:
            for i in range(4):
                await b.submit(items(i, 1))
        finally:
            await b.close()

    asyncio.run(one_at_a_time())
    assert [i.batches for i in pair] == [2, 2]  # an idle instance that waited longest first
    for index in ("0", "1"):
        labels = {"model": "m@1", "graph": "decoder", "model_instance": index}
        assert metrics.registry.get_sample_value("latentserve_batch_items_count", labels) == 2


@pytest.mark.parametrize("value", ["0", "-1", "[]", "[0, 0]", "[-1]", "true", "1.5"])
def test_a_bad_instances_value_is_refused_naming_the_setting(value: str, tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text(f"[models.vae]\ninstances = {value}\n")
    with pytest.raises(ValidationError, match=r"models\.vae\.instances") as refused:
        load_settings(config)
    assert "count >= 1" in str(refused.value)
    config.write_text(f"instances = {value}\n")
    with pytest.raises(ValidationError, match=r"\ninstances\n"):
        load_settings(config)


def test_a_count_and_device_ids_are_accepted_and_a_model_table_overrides_the_server() -> None:
    settings = Settings(instances=2, models={"a": {"instances": [1, 0]}})
    defaults = fake_manifest("a", "1").serving
    assert settings.serving_for("a", defaults).instances == (1, 0)
    assert settings.serving_for("b", defaults).instances == 2


def test_device_ids_need_a_usable_cuda_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert runtime.instance_devices(3, "onnxruntime") == [None, None, None]
    monkeypatch.setattr(runtime, "_cuda_usable", lambda: False)
    with pytest.raises(ValueError, match=r"no CUDA device.*instances = 2"):
        runtime.instance_devices((0, 1), "onnxruntime")
    monkeypatch.setattr(runtime, "_cuda_usable", lambda: True)
    monkeypatch.setattr(runtime, "cuda_device_count", lambda: 2)
    assert runtime.instance_devices((1, 0), "onnxruntime") == [1, 0]
    with pytest.raises(ValueError, match=r"device\(s\) \[2\]"):
        runtime.instance_devices((0, 2), "onnxruntime")
    with pytest.raises(ValueError, match="torchscript backend runs on CPU"):
        runtime.instance_devices((0,), "torchscript")


def _write_model(root: Path) -> Path:
    manifest = fake_manifest("fake-vae", "1")
    version_dir = root / manifest.name / manifest.version
    version_dir.mkdir(parents=True)
    manifest.save(version_dir)
    return version_dir


def test_each_instance_opens_its_own_copy_of_every_graph_and_warms_it_up(
    tmp_path: Path,
) -> None:
    version_dir = _write_model(tmp_path)
    opened: list[tuple[str, int | None, Recorder]] = []

    def opener(folder: Path, spec: GraphSpec, backend: str, threads: int, **device: int):
        role = Path(spec.files["onnx"].path).stem
        opened.append((role, device.get("device_id"), FAKES[role](0.0)))
        return opened[-1][2]

    settings = Settings(repository=tmp_path, models={"fake-vae": {"instances": 2}})

    async def load_and_warm_up() -> None:
        model = load_model(version_dir, settings, build_pipeline, opener=opener)
        try:
            await warm_up(model)
        finally:
            await model.pipeline.close()

    asyncio.run(load_and_warm_up())
    roles = {role for role, _, _ in opened}
    assert roles == {"sampler", "encoder", "decoder"}
    assert sorted((r, d) for r, d, _ in opened) == sorted((r, None) for r in roles for _ in "01")
    # Warm-up ran every capability once per instance: each copy of each graph has run.
    assert [(role, fake.calls) for role, _, fake in opened if not fake.calls] == []


def test_device_ids_on_a_machine_without_cuda_are_refused_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "_cuda_usable", lambda: False)
    version_dir = _write_model(tmp_path)
    settings = Settings(repository=tmp_path, models={"fake-vae": {"instances": [0, 1]}})
    with pytest.raises(ValueError, match=r"setting 'instances' of model fake-vae: .*no CUDA"):
        load_model(version_dir, settings, build_pipeline)


def test_an_instance_device_id_becomes_the_cuda_providers_device_id(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Without a GPU here, what can be checked is what ONNX Runtime is asked for: the
    # session is recorded instead of created (a CUDA session cannot be made on this machine).
    import onnxruntime as ort

    asked: list[list] = []

    class Recorded:
        def __init__(self, path: str, sess_options: object, providers: list) -> None:
            asked.append(providers)

        def get_providers(self) -> list[str]:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

        def get_outputs(self) -> list:
            return []

    monkeypatch.setattr(ort, "InferenceSession", Recorded)
    monkeypatch.setattr(runtime, "_cuda_usable", lambda: True)
    runtime.OnnxRuntime(tmp_path / "g.onnx", 1, device_id=1)
    runtime.OnnxRuntime(tmp_path / "g.onnx", 1)
    monkeypatch.setattr(runtime, "_cuda_usable", lambda: False)
    runtime.OnnxRuntime(tmp_path / "g.onnx", 1, device_id=None)
    assert asked == [
        [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"],
        [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"],
        ["CPUExecutionProvider"],
    ]
