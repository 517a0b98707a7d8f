"""NVAE export: manifest latent groups, parity, encode → decode through ONNX, the
sampler's prior path and the log_prob graph against the eager bound."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from latentserve.exporters.export import export_run
from latentserve.exporters.formats import export_onnx, export_torchscript
from latentserve.exporters.parity import TOLERANCE, check_parity
from latentserve.exporters.recipes import get_recipe
from latentserve.training.checkpoint import load_run
from latentserve.training.data import load_mnist
from tiny_runs import onnx_session, train_tiny

from latentserve.manifest import Manifest


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny("nvae-tiny", tmp_path_factory.mktemp("runs") / "nvae", steps=10)


@pytest.fixture(scope="module")
def folder(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_run(run_dir, tmp_path_factory.mktemp("models"), "nv")


def test_manifest_lists_the_groups(folder: Path, run_dir: Path) -> None:
    manifest = Manifest.load(folder)
    model = load_run(run_dir).model
    assert manifest.family == "nvae" and manifest.pipeline == "latent_decoder"
    assert manifest.likelihood == "elbo"
    assert set(manifest.capabilities) == {
        "sample",
        "encode",
        "reconstruct",
        "log_prob",
        "interpolate",
    }
    groups = manifest.latent.groups
    assert [g.name for g in groups] == ["z0", "z1", "z2", "z3"]
    assert [tuple(g.shape) for g in groups] == model.latent_shapes
    assert manifest.latent.shape == [sum(math.prod(g.shape) for g in groups)]
    assert manifest.latent.shape == [model.latent_dim]
    assert [s.name for s in manifest.graphs["encoder"].outputs] == ["z0", "z1", "z2", "z3"]
    assert [s.name for s in manifest.graphs["decoder"].inputs] == ["z0", "z1", "z2", "z3"]
    assert manifest.graphs["log_prob"].inputs[1].shape == ["batch", "samples", model.latent_dim]


def test_parity_of_each_graph(run_dir: Path, tmp_path: Path) -> None:
    model = load_run(run_dir).model
    for plan in get_recipe("nvae").plan(model).graphs:
        plan.module.eval()
        example = plan.example_inputs(2, torch.Generator().manual_seed(0))
        export_onnx(plan.module, example, plan.inputs, plan.outputs, tmp_path / "g.onnx")
        export_torchscript(plan.module, example, tmp_path / "g.pt")
        diffs = check_parity(plan, tmp_path / "g.onnx", tmp_path / "g.pt", seed=3)
        assert max(diffs.values()) <= TOLERANCE * 10, (plan.role, diffs)


def test_encode_then_decode_through_onnx(folder: Path, run_dir: Path) -> None:
    model = load_run(run_dir).model
    x = load_mnist().test[:6]
    x01 = (x.float() / 255.0).numpy()
    latents = onnx_session(folder, "encoder").run(None, {"image": x01})
    with torch.no_grad():
        eager = model.encode_means(torch.from_numpy(x01))
        eager_image = model.decode_mean(eager).numpy()
    for got, want in zip(latents, eager, strict=True):
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4)
    names = [f"z{i}" for i in range(len(latents))]
    image = onnx_session(folder, "decoder").run(None, dict(zip(names, latents, strict=True)))[0]
    assert image.shape == x01.shape and image.min() >= 0.0 and image.max() <= 1.0
    np.testing.assert_allclose(image, eager_image, atol=1e-4)


def test_sampler_at_temperature_zero_is_decoder_of_prior_means(folder: Path, run_dir: Path) -> None:
    model = load_run(run_dir).model
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((3, model.latent_dim)).astype(np.float32)
    sampler = onnx_session(folder, "sampler")
    cold = sampler.run(None, {"noise": noise, "temperature": np.zeros(3, np.float32)})[0]
    other = sampler.run(None, {"noise": -noise, "temperature": np.zeros(3, np.float32)})[0]
    np.testing.assert_allclose(cold, other, atol=1e-6)  # noise is ignored at T = 0
    ref = torch.zeros(3, *model.latent_shapes[0])
    with torch.no_grad():
        _, _, draws = model.top_down(None, lambda i, q, p: p.mu, ref)
    means = {f"z{i}": z.numpy() for i, (z, _, _) in enumerate(draws)}
    decoded = onnx_session(folder, "decoder").run(None, means)[0]
    np.testing.assert_allclose(cold, decoded, atol=1e-5)
    warm = sampler.run(None, {"noise": noise, "temperature": np.ones(3, np.float32)})[0]
    assert np.abs(warm - cold).max() > 1e-3


def test_log_prob_graph_matches_eager_bound(folder: Path, run_dir: Path) -> None:
    model = load_run(run_dir).model
    x = load_mnist().test[:100]
    x01 = (x.float() / 255.0).numpy()
    rng = np.random.default_rng(1)
    log_prob = onnx_session(folder, "log_prob")
    noise = rng.standard_normal((100, 1, model.latent_dim)).astype(np.float32)
    one = log_prob.run(None, {"image": x01, "noise": noise})[0]
    eps = model.split_flat(torch.from_numpy(noise[:, 0]))
    with torch.no_grad():
        log_w = model.log_weight(x, lambda i, like: eps[i])
    expected = (-log_w / (784 * math.log(2.0))).numpy()
    np.testing.assert_allclose(one, expected, rtol=1e-4)
    # The one-sample estimate agrees on average with the analytic-KL ELBO of evaluate.
    with torch.no_grad():
        elbo = model.evaluate(x, torch.Generator().manual_seed(0))["bits_per_dim"]
    assert one.mean() == pytest.approx(elbo.mean().item() / (784 * math.log(2.0)), rel=0.02)
    many = rng.standard_normal((100, 8, model.latent_dim)).astype(np.float32)
    iw = log_prob.run(None, {"image": x01, "noise": many})[0]
    assert iw.shape == (100,) and iw.mean() < one.mean()
