"""VQ-VAE-2 export: the two-map autoregressive_prior manifest, graph parity, and the
server's sampling loop (top map, then bottom map given it) run in numpy over the graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from latentserve.exporters.export import export_run
from latentserve.exporters.formats import export_onnx, export_torchscript
from latentserve.exporters.parity import check_parity
from latentserve.exporters.recipes import get_recipe
from latentserve.training.checkpoint import load_run
from latentserve.training.data import load_mnist
from tiny_runs import TinyRuns, onnx_session

from latentserve.manifest import Manifest

KT, KB = 8, 16  # codebook sizes of vqvae2-tiny


@pytest.fixture(scope="module")
def vq2_run(tiny_runs: TinyRuns) -> Path:
    # all 30 steps: fewer leave digits barely cheaper than noise (about 12 bits/dim)
    return tiny_runs.run("vqvae2-tiny")


@pytest.fixture(scope="module")
def exported(vq2_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_run(vq2_run, tmp_path_factory.mktemp("models"), "vq2")


def test_manifest_describes_two_code_maps_in_sampling_order(exported: Path) -> None:
    manifest = Manifest.load(exported)
    assert manifest.family == "vqvae2" and manifest.pipeline == "autoregressive_prior"
    assert manifest.capabilities == ["sample", "encode", "reconstruct", "log_prob"]
    assert manifest.likelihood == "elbo"
    assert manifest.latent.shape == [14, 14] and manifest.latent.prior == "autoregressive"
    groups = [(g.name, g.shape, g.dtype) for g in manifest.latent.encoded()]
    assert groups == [("codes_top", [7, 7], "int64"), ("codes_bottom", [14, 14], "int64")]
    maps = [
        (c.name, c.height, c.width, c.codebook_size, c.prior, c.conditions) for c in manifest.codes
    ]
    assert maps == [
        ("codes_top", 7, 7, KT, "prior_top", []),
        ("codes_bottom", 14, 14, KB, "prior_bottom", ["codes_top"]),
    ]
    io = {
        r: ([i.name for i in g.inputs], [o.name for o in g.outputs])
        for r, g in manifest.graphs.items()
    }
    assert io == {
        "encoder": (["image"], ["codes_top", "codes_bottom"]),
        "decoder": (["codes_top", "codes_bottom"], ["image"]),
        "prior_top": (["codes_top"], ["logits"]),
        "prior_bottom": (["codes_bottom", "codes_top"], ["logits"]),
        "log_prob": (["image"], ["bits_per_dim"]),
    }
    assert manifest.graphs["prior_top"].outputs[0].shape == ["batch", KT, 7, 7]
    assert manifest.graphs["prior_bottom"].outputs[0].shape == ["batch", KB, 14, 14]
    metrics = manifest.provenance.metrics
    assert metrics["prior_top_bits_per_dim"] > 0 and metrics["prior_bottom_bits_per_dim"] > 0


def test_onnx_graphs_are_valid_with_dynamic_batch(exported: Path) -> None:
    manifest = Manifest.load(exported)
    for role, graph in manifest.graphs.items():
        model = onnx.load(str(exported / graph.files["onnx"].path))
        onnx.checker.check_model(model)
        ops = {node.op_type for node in model.graph.node}
        assert not ops & {"RandomNormal", "RandomNormalLike", "RandomUniform", "Multinomial"}
        assert (exported / graph.files["torchscript"].path).is_file(), role
    rng = np.random.default_rng(0)
    top, bottom = rng.integers(0, KT, (3, 7, 7)), rng.integers(0, KB, (3, 14, 14))
    logits = onnx_session(exported, "prior_bottom").run(
        None, {"codes_bottom": bottom, "codes_top": top}
    )[0]
    assert logits.shape == (3, KB, 14, 14) and logits.dtype == np.float32
    encoded = onnx_session(exported, "encoder").run(
        None, {"image": np.zeros((9, 1, 28, 28), np.float32)}
    )
    assert [c.shape for c in encoded] == [(9, 7, 7), (9, 14, 14)]
    assert all(c.dtype == np.int64 for c in encoded)


def test_parity_of_each_graph(vq2_run: Path, tmp_path: Path) -> None:
    model = load_run(vq2_run).model
    roles = []
    for plan in get_recipe("vqvae2").plan(model).graphs:
        example = plan.example_inputs(2, torch.Generator().manual_seed(0))
        export_onnx(plan.module, example, plan.inputs, plan.outputs, tmp_path / "g.onnx")
        export_torchscript(plan.module, example, tmp_path / "g.pt")
        # raises ExportParityError past the tolerance
        diffs = check_parity(plan, tmp_path / "g.onnx", tmp_path / "g.pt", seed=3)
        if plan.role == "encoder":  # codes are integers: any difference is a wrong code
            assert diffs == {"onnx": 0.0, "torchscript": 0.0}
        roles.append(plan.role)
    assert roles == ["encoder", "decoder", "prior_top", "prior_bottom", "log_prob"]


def categorical(logits: np.ndarray, temperature: float, u: np.ndarray) -> np.ndarray:
    scaled = logits.astype(np.float64) / temperature
    p = np.exp(scaled - scaled.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return (p.cumsum(1) < u[:, None]).sum(1).clip(max=logits.shape[1] - 1)


def sample_codes(folder: Path, n: int, temperature: float, seed: int) -> dict[str, np.ndarray]:
    """The server's loop: the top map position by position with prior_top, then the
    bottom map position by position with prior_bottom given the finished top map."""
    rng = np.random.Generator(np.random.Philox(seed))
    top = np.zeros((n, 7, 7), dtype=np.int64)
    prior_top = onnx_session(folder, "prior_top")
    for i in range(7):
        for j in range(7):
            logits = prior_top.run(None, {"codes_top": top})[0][:, :, i, j]
            top[:, i, j] = categorical(logits, temperature, rng.random(n))
    bottom = np.zeros((n, 14, 14), dtype=np.int64)
    prior_bottom = onnx_session(folder, "prior_bottom")
    for i in range(14):
        for j in range(14):
            inputs = {"codes_bottom": bottom, "codes_top": top}
            logits = prior_bottom.run(None, inputs)[0][:, :, i, j]
            bottom[:, i, j] = categorical(logits, temperature, rng.random(n))
    return {"codes_top": top, "codes_bottom": bottom}


def test_two_level_sampling_over_the_exported_graphs(exported: Path) -> None:
    codes = sample_codes(exported, 4, temperature=1.0, seed=7)
    assert codes["codes_top"].max() < KT and codes["codes_bottom"].max() < KB
    assert min(c.min() for c in codes.values()) >= 0
    again = sample_codes(exported, 4, temperature=1.0, seed=7)
    assert all(np.array_equal(codes[k], again[k]) for k in codes)
    other = sample_codes(exported, 4, temperature=1.0, seed=8)
    assert not np.array_equal(codes["codes_bottom"], other["codes_bottom"])
    images = onnx_session(exported, "decoder").run(None, codes)[0]
    assert images.shape == (4, 1, 28, 28) and images.dtype == np.float32
    assert np.isfinite(images).all() and images.min() >= 0.0 and images.max() <= 1.0
    # Near-zero temperature: every position takes its most likely code. One call on each
    # finished map gives every position the logits it was sampled from (they see only
    # earlier codes of that map, and the whole top map), so the greedy codes are argmaxes.
    cold = sample_codes(exported, 2, temperature=1e-4, seed=1)
    top_logits = onnx_session(exported, "prior_top").run(None, {"codes_top": cold["codes_top"]})[0]
    assert np.array_equal(cold["codes_top"], top_logits.argmax(1))
    bottom_logits = onnx_session(exported, "prior_bottom").run(None, cold)[0]
    assert np.array_equal(cold["codes_bottom"], bottom_logits.argmax(1))


def test_encoder_then_decoder_reconstructs_like_eager(vq2_run: Path, exported: Path) -> None:
    model = load_run(vq2_run).model
    image = (load_mnist().test[:8].float() / 255).numpy()
    names = ["codes_top", "codes_bottom"]
    outputs = onnx_session(exported, "encoder").run(None, {"image": image})
    codes = dict(zip(names, outputs, strict=True))
    recon = onnx_session(exported, "decoder").run(None, codes)[0]
    with torch.no_grad():
        eager_top, eager_bottom = model.encode_codes(torch.from_numpy(image))
        eager = model.decode_mean(eager_top, eager_bottom)
    assert np.array_equal(codes["codes_top"], eager_top.numpy())
    assert np.array_equal(codes["codes_bottom"], eager_bottom.numpy())
    np.testing.assert_allclose(recon, eager.numpy(), atol=1e-4)
    assert recon.shape == image.shape and recon.min() >= 0.0 and recon.max() <= 1.0


def test_log_prob_graph_matches_eager_evaluate(vq2_run: Path, exported: Path) -> None:
    model = load_run(vq2_run).model
    x = load_mnist().test[:16]
    bits = onnx_session(exported, "log_prob").run(None, {"image": (x.float() / 255).numpy()})[0]
    with torch.no_grad():
        nats = model.evaluate(x, torch.Generator())["bits_per_dim"]
    expected = (nats / (784 * np.log(2.0))).numpy()
    assert bits.shape == (16,)
    np.testing.assert_allclose(bits, expected, rtol=1e-4, atol=1e-4)
    noise = np.random.default_rng(0).integers(0, 256, (4, 1, 28, 28)) / 255.0
    noisy = onnx_session(exported, "log_prob").run(None, {"image": noise.astype(np.float32)})[0]
    assert np.all(noisy > bits.max())  # digits are cheaper than uniform noise
