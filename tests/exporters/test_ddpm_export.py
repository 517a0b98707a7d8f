"""DDPM export: the diffusion manifest, denoiser parity with the eager EMA network, rows at
their own timesteps, the unconditional variant, and a numpy DDIM loop over the ONNX graph."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from latentserve.exporters.export import export_run
from latentserve.exporters.formats import export_onnx, export_torchscript
from latentserve.exporters.parity import check_parity
from latentserve.exporters.recipes import get_recipe
from latentserve.server.pipelines import build_pipeline
from latentserve.server.repository.store import load_model
from latentserve.server.settings import Settings
from latentserve.training.checkpoint import load_run
from latentserve.training.trainer import train
from tiny_runs import onnx_session, tiny_config, train_tiny

from latentserve.manifest import Manifest

T = 100  # num_train_timesteps of ddpm-tiny
NULL = 10


@pytest.fixture(scope="module")
def ddpm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny("ddpm-tiny", tmp_path_factory.mktemp("runs") / "ddpm", steps=15)


@pytest.fixture(scope="module")
def exported(ddpm_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_run(ddpm_run, tmp_path_factory.mktemp("models"), "ddpm")


def test_manifest_describes_the_diffusion_pipeline(exported: Path) -> None:
    manifest = Manifest.load(exported)
    assert manifest.family == "ddpm" and manifest.pipeline == "diffusion"
    assert manifest.capabilities == ["sample", "interpolate"] and manifest.likelihood is None
    assert manifest.latent.shape == [1, 28, 28]
    schedule = manifest.noise_schedule
    assert schedule.num_train_timesteps == T  # the cosine schedule it trained with, written out
    np.testing.assert_allclose(schedule.alphas_cumprod, alphas_cumprod("cosine", T), rtol=1e-12)
    assert schedule.prediction_type == "epsilon" and schedule.sample_range == (-1.0, 1.0)
    assert schedule.clip_sample and (schedule.default_sampler, schedule.default_steps) == (
        "ddim",
        50,
    )
    conditioning = manifest.conditioning
    assert (conditioning.num_classes, conditioning.null_label) == (10, NULL)
    assert conditioning.labels == [str(i) for i in range(10)]
    assert conditioning.default_guidance_scale > 1.0
    [role] = manifest.graphs
    graph = manifest.graphs[role]
    assert role == "denoiser"
    assert [(i.name, i.dtype, i.shape) for i in graph.inputs] == [
        ("sample", "float32", ["batch", 1, 28, 28]),
        ("timestep", "float32", ["batch"]),
        ("class_label", "int64", ["batch"]),
    ]
    assert [(o.name, o.shape) for o in graph.outputs] == [("prediction", ["batch", 1, 28, 28])]
    assert set(manifest.provenance.metrics) == {"denoising_mse"}


def test_example_inputs_are_valid_timesteps_and_labels(ddpm_run: Path) -> None:
    [plan] = get_recipe("ddpm").plan(load_run(ddpm_run).model).graphs
    _, t, labels = plan.example_inputs(500, torch.Generator().manual_seed(0))
    assert t.dtype == torch.float32 and torch.equal(t, t.round())
    assert t.min() >= 0 and t.max() < T and len(t.unique()) > 50
    assert labels.dtype == torch.int64 and labels.min() >= 0 and labels.max() == NULL


def test_denoiser_is_the_ema_network(ddpm_run: Path, exported: Path) -> None:
    model = load_run(ddpm_run).model
    rng = np.random.default_rng(0)
    sample = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
    t = np.array([0, 5, 50, 99], np.float32)
    labels = np.array([1, 2, 3, NULL])
    feeds = {"sample": sample, "timestep": t, "class_label": labels}
    onnx_out = onnx_session(exported, "denoiser").run(None, feeds)[0]
    with torch.no_grad():
        args = (torch.from_numpy(sample), torch.from_numpy(t), torch.from_numpy(labels))
        ema = model.ema.shadow(*args).numpy()
        live = model.unet(*args).numpy()
    np.testing.assert_allclose(onnx_out, ema, atol=1e-4)
    assert np.abs(ema - live).max() > 1e-3  # the export took the EMA weights


def test_parity_check_passes(ddpm_run: Path, tmp_path: Path) -> None:
    [plan] = get_recipe("ddpm").plan(load_run(ddpm_run).model).graphs
    example = plan.example_inputs(2, torch.Generator().manual_seed(0))
    export_onnx(plan.module, example, plan.inputs, plan.outputs, tmp_path / "d.onnx")
    export_torchscript(plan.module, example, tmp_path / "d.pt")
    check_parity(plan, tmp_path / "d.onnx", tmp_path / "d.pt", seed=5)  # raises past tolerance


def test_each_row_runs_at_its_own_timestep(exported: Path) -> None:
    session = onnx_session(exported, "denoiser")
    rng = np.random.default_rng(1)
    sample = rng.standard_normal((5, 1, 28, 28)).astype(np.float32)
    t = np.array([0, 99, 17, 50, 99], np.float32)
    labels = np.array([3, NULL, 7, 0, 9])
    batch = session.run(None, {"sample": sample, "timestep": t, "class_label": labels})[0]
    for i in range(5):
        feeds = {
            "sample": sample[i : i + 1],
            "timestep": t[i : i + 1],
            "class_label": labels[i : i + 1],
        }
        np.testing.assert_allclose(batch[i : i + 1], session.run(None, feeds)[0], atol=1e-5)


def test_unconditional_model_has_no_class_label(tmp_path: Path) -> None:
    base = tiny_config("ddpm-tiny", steps=3)
    model = {**base.model, "num_classes": 0, "prediction_type": "v_prediction"}
    config = dataclasses.replace(base, model={**model, "beta_schedule": "linear"})
    train(config, tmp_path / "run", progress=False)
    folder = export_run(tmp_path / "run", tmp_path / "models", "ddpm-uncond")
    manifest = Manifest.load(folder)
    assert [i.name for i in manifest.graphs["denoiser"].inputs] == ["sample", "timestep"]
    assert manifest.conditioning is None
    assert manifest.noise_schedule.prediction_type == "v_prediction"
    np.testing.assert_allclose(
        manifest.noise_schedule.alphas_cumprod, alphas_cumprod("linear", T), rtol=1e-12
    )
    session = onnx_session(folder, "denoiser")
    feeds = {
        "sample": np.zeros((2, 1, 28, 28), np.float32),
        "timestep": np.array([1.0, 9.0], np.float32),
    }
    assert session.run(None, feeds)[0].shape == (2, 1, 28, 28)


def alphas_cumprod(kind: str, steps: int) -> np.ndarray:
    """The schedule a config names, written here independently of the training code."""
    if kind == "linear":
        betas = np.linspace(1e-4, 0.02, steps, dtype=np.float64)
    else:
        f = np.cos((np.arange(steps + 1) / steps + 0.008) / 1.008 * np.pi / 2) ** 2
        betas = np.minimum(1 - f[1:] / f[:-1], 0.999)
    return np.cumprod(1 - betas)


def ddim_sample(
    session: ort.InferenceSession,
    manifest: Manifest,
    labels: np.ndarray,
    guidance: float,
    steps: int,
    seed: int,
) -> np.ndarray:
    """Deterministic DDIM (η = 0) with classifier-free guidance, ε-prediction, x0 clipped."""
    ab = np.asarray(manifest.noise_schedule.alphas_cumprod)
    total = len(ab)
    n = len(labels)
    x = np.random.Generator(np.random.Philox(seed)).standard_normal((n, *manifest.latent.shape))
    timesteps = np.linspace(total - 1, 0, steps).round().astype(np.int64)
    null = np.full(n, manifest.conditioning.null_label)
    for i, t in enumerate(timesteps):
        feeds = {
            "sample": np.concatenate([x, x]).astype(np.float32),
            "timestep": np.full(2 * n, t, np.float32),
            "class_label": np.concatenate([labels, null]),
        }
        cond, uncond = np.split(session.run(None, feeds)[0].astype(np.float64), 2)
        eps = uncond + guidance * (cond - uncond)
        x0 = np.clip((x - np.sqrt(1 - ab[t]) * eps) / np.sqrt(ab[t]), -1.0, 1.0)
        eps = (x - np.sqrt(ab[t]) * x0) / np.sqrt(1 - ab[t])
        ab_prev = ab[timesteps[i + 1]] if i + 1 < steps else 1.0
        x = np.sqrt(ab_prev) * x0 + np.sqrt(1 - ab_prev) * eps
    return x


def test_ddim_loop_over_the_exported_denoiser(exported: Path) -> None:
    manifest = Manifest.load(exported)
    session = onnx_session(exported, "denoiser")
    labels = np.array([0, 3, 7])
    images = ddim_sample(session, manifest, labels, guidance=2.0, steps=20, seed=0)
    assert images.shape == (3, 1, 28, 28) and np.isfinite(images).all()
    assert images.min() >= -1.0 and images.max() <= 1.0
    again = ddim_sample(session, manifest, labels, guidance=2.0, steps=20, seed=0)
    np.testing.assert_allclose(images, again)
    other = ddim_sample(session, manifest, labels, guidance=2.0, steps=20, seed=1)
    assert np.abs(images - other).max() > 1e-3


def as_schema_3(version_dir: Path, target: Path) -> Path:
    """A copy of an exported version whose manifest is what schema 3 exporters wrote: the
    schedule named by the config it was trained with, in a ``scheduler`` section."""
    data = json.loads((version_dir / "manifest.json").read_text())
    model = data["provenance"]["config"]["model"]
    schedule = data.pop("noise_schedule")
    del schedule["alphas_cumprod"]
    named = ("beta_schedule", "num_train_timesteps", "beta_start", "beta_end")
    data |= {"schema_version": 3, "scheduler": {k: model[k] for k in named} | schedule}
    shutil.copytree(version_dir, target)
    (target / "manifest.json").write_text(json.dumps(data))
    return target


def test_a_schema_3_copy_loads_in_the_server_and_samples_alike(
    exported: Path, tmp_path: Path
) -> None:
    """Repositories exported before schema 4 keep loading: the schedule their manifest names
    is the one the current manifest writes out, so the images are the same."""
    old = as_schema_3(exported, tmp_path / exported.parent.name / exported.name)
    assert Manifest.load(old).schema_version == 3

    async def sample(version_dir: Path) -> np.ndarray:
        model = load_model(version_dir, Settings(), build_pipeline)
        try:
            pipeline = model.pipeline
            params = {"n": 2, "seed": 5, "steps": 4, "class_label": 3}
            return await pipeline.sample(pipeline.prepare(params))
        finally:
            await model.pipeline.close()

    new_images, old_images = asyncio.run(sample(exported)), asyncio.run(sample(old))
    assert new_images.shape == (2, 1, 28, 28)
    np.testing.assert_array_equal(old_images, new_images)
