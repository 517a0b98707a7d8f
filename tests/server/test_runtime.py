"""Graph runtimes and repository loading on real exported graphs."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest
from latentserve.server.errors import ModelNotFound
from latentserve.server.pipelines import build_pipeline
from latentserve.server.repository.runtime import (
    GraphIntegrityError,
    OnnxRuntime,
    cuda_device_present,
    open_graph,
)
from latentserve.server.repository.store import ModelRepository
from latentserve.server.settings import ModelOverrides, Settings

from latentserve.manifest import GraphFile, GraphSpec, Manifest, TensorSpec, sha256_file


def doubling_graph(path: Path) -> GraphSpec:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        "double",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[two],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return GraphSpec(
        inputs=[TensorSpec(name="x", dtype="float32", shape=["batch", 3])],
        outputs=[TensorSpec(name="y", dtype="float32", shape=["batch", 3])],
        files={"onnx": GraphFile(path=path.name, sha256=sha256_file(path))},
    )


def test_onnx_runtime_runs_and_reports_its_real_providers(tmp_path: Path) -> None:
    spec = doubling_graph(tmp_path / "double.onnx")
    runtime = open_graph(tmp_path, spec, "onnxruntime", intra_op_threads=1)
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_array_equal(runtime.run({"x": x})["y"], x * 2)
    assert isinstance(runtime, OnnxRuntime)
    assert runtime.providers[-1] == "CPUExecutionProvider"
    assert ("CUDAExecutionProvider" in runtime.providers) == cuda_device_present()


def test_checksums_are_verified_before_loading(tmp_path: Path) -> None:
    spec = doubling_graph(tmp_path / "double.onnx")
    (tmp_path / "double.onnx").write_bytes(b"tampered")
    with pytest.raises(GraphIntegrityError, match="does not match manifest"):
        open_graph(tmp_path, spec, "onnxruntime", 1)
    (tmp_path / "double.onnx").unlink()
    with pytest.raises(FileNotFoundError):
        open_graph(tmp_path, spec, "onnxruntime", 1)


def test_a_backend_without_a_file_is_refused(tmp_path: Path) -> None:
    spec = doubling_graph(tmp_path / "double.onnx")
    with pytest.raises(ValueError, match="no torchscript file"):
        open_graph(tmp_path, spec, "torchscript", 1)


@pytest.mark.slow
def test_repository_loads_and_resolves_the_tiny_models(tiny_repository: Path) -> None:
    repository = ModelRepository.load(
        tiny_repository, Settings(repository=tiny_repository), build_pipeline
    )
    assert [m.label for m in repository.models()] == ["ae-tiny@1", "vae-tiny@1", "vae-tiny@2"]
    assert repository.resolve("vae-tiny").label == "vae-tiny@2"
    assert repository.resolve("vae-tiny@1").label == "vae-tiny@1"
    with pytest.raises(ModelNotFound):
        repository.resolve("vae-tiny@3")


@pytest.mark.slow
def test_a_renamed_version_folder_is_refused(tiny_repository: Path, tmp_path: Path) -> None:
    shutil.copytree(tiny_repository / "ae-tiny" / "1", tmp_path / "ae-tiny" / "5")
    with pytest.raises(ValueError, match="folder says ae-tiny@5"):
        ModelRepository.load(tmp_path, Settings(repository=tmp_path), build_pipeline)


@pytest.mark.slow
def test_torchscript_backend_matches_onnx(tiny_repository: Path) -> None:
    # The exporter writes every graph as ONNX and TorchScript: both must be there.
    version_dir = tiny_repository / "vae-tiny" / "1"
    manifest = Manifest.load(version_dir)
    for role, graph in manifest.graphs.items():
        assert (version_dir / graph.files["torchscript"].path).is_file(), role
    settings = Settings(
        repository=tiny_repository, models={"vae-tiny": ModelOverrides(backend="torchscript")}
    )
    scripted = ModelRepository.load(tiny_repository, settings, build_pipeline).resolve("vae-tiny@1")
    onnx = ModelRepository.load(
        tiny_repository, Settings(repository=tiny_repository), build_pipeline
    )
    assert scripted.backend == "torchscript"

    async def both() -> list[np.ndarray]:
        models = (scripted, onnx.resolve("vae-tiny@1"))
        return [
            await m.pipeline.sample(m.pipeline.prepare({"n": 6, "seed": 5, "temperature": 0.7}))
            for m in models
        ]

    from_torchscript, from_onnx = asyncio.run(both())
    assert from_onnx.shape == (6, 1, 28, 28)
    np.testing.assert_allclose(from_torchscript, from_onnx, atol=1e-5)
