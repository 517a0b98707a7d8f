"""VQ-VAE export: the autoregressive_prior manifest, graph parity, and the server's
sampling loop run in numpy over the exported prior and decoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from latentserve.exporters.export import export_run
from latentserve.exporters.formats import export_onnx, export_torchscript
from latentserve.exporters.parity import check_parity
from latentserve.exporters.recipes import get_recipe
from latentserve.training.checkpoint import load_run
from latentserve.training.data import load_mnist
from tiny_runs import onnx_session, train_tiny

from latentserve.manifest import Manifest

K = 16  # num_codes of vqvae-tiny


@pytest.fixture(scope="module")
def vq_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny("vqvae-tiny", tmp_path_factory.mktemp("runs") / "vqvae", steps=15)


@pytest.fixture(scope="module")
def exported(vq_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_run(vq_run, tmp_path_factory.mktemp("models"), "vq")


def test_manifest_describes_the_autoregressive_pipeline(exported: Path) -> None:
    manifest = Manifest.load(exported)
    assert manifest.family == "vqvae" and manifest.pipeline == "autoregressive_prior"
    assert manifest.capabilities == ["sample", "encode", "reconstruct", "log_prob"]
    assert manifest.likelihood == "elbo"
    assert manifest.latent.shape == [7, 7] and manifest.latent.prior == "autoregressive"
    [group] = manifest.latent.encoded()
    assert (group.name, group.shape, group.dtype) == ("codes", [7, 7], "int64")
    [code_map] = manifest.codes
    assert (code_map.name, code_map.height, code_map.width) == ("codes", 7, 7)
    assert (code_map.codebook_size, code_map.prior, code_map.conditions) == (K, "prior", [])
    assert set(manifest.graphs) == {"encoder", "decoder", "prior", "log_prob"}
    io = {
        r: ([i.name for i in g.inputs], [o.name for o in g.outputs])
        for r, g in manifest.graphs.items()
    }
    assert io == {
        "encoder": (["image"], ["codes"]),
        "decoder": (["codes"], ["image"]),
        "prior": (["codes"], ["logits"]),
        "log_prob": (["image"], ["bits_per_dim"]),
    }
    assert manifest.graphs["prior"].outputs[0].shape == ["batch", K, 7, 7]
    assert manifest.provenance.metrics["prior_bits_per_dim"] > 0


def test_onnx_graphs_are_valid_with_dynamic_batch(exported: Path) -> None:
    manifest = Manifest.load(exported)
    for role, graph in manifest.graphs.items():
        model = onnx.load(str(exported / graph.files["onnx"].path))
        onnx.checker.check_model(model)
        ops = {node.op_type for node in model.graph.node}
        assert not ops & {"RandomNormal", "RandomNormalLike", "RandomUniform", "Multinomial"}
        assert (exported / graph.files["torchscript"].path).is_file(), role
    codes = np.random.default_rng(0).integers(0, K, (3, 7, 7))
    logits = onnx_session(exported, "prior").run(None, {"codes": codes})[0]
    assert logits.shape == (3, K, 7, 7) and logits.dtype == np.float32
    enc = onnx_session(exported, "encoder").run(
        None, {"image": np.zeros((9, 1, 28, 28), np.float32)}
    )
    assert enc[0].shape == (9, 7, 7) and enc[0].dtype == np.int64


def test_parity_of_each_graph(vq_run: Path, tmp_path: Path) -> None:
    model = load_run(vq_run).model
    for plan in get_recipe("vqvae").plan(model).graphs:
        example = plan.example_inputs(2, torch.Generator().manual_seed(0))
        export_onnx(plan.module, example, plan.inputs, plan.outputs, tmp_path / "g.onnx")
        export_torchscript(plan.module, example, tmp_path / "g.pt")
        # raises ExportParityError past the tolerance
        diffs = check_parity(plan, tmp_path / "g.onnx", tmp_path / "g.pt", seed=3)
        if plan.role == "encoder":  # codes are integers: any difference is a wrong code
            assert diffs == {"onnx": 0.0, "torchscript": 0.0}


def sample_codes(prior: ort.InferenceSession, n: int, temperature: float, seed: int) -> np.ndarray:
    """The server's loop: one prior call per position, raster order, softmax(logits / T)."""
    rng = np.random.Generator(np.random.Philox(seed))
    codes = np.zeros((n, 7, 7), dtype=np.int64)
    for i in range(7):
        for j in range(7):
            logits = prior.run(None, {"codes": codes})[0][:, :, i, j].astype(np.float64)
            scaled = logits / temperature
            p = np.exp(scaled - scaled.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            u = rng.random((n, 1))
            codes[:, i, j] = (p.cumsum(1) < u).sum(1).clip(max=K - 1)
    return codes


def test_autoregressive_sampling_over_the_exported_graphs(exported: Path) -> None:
    prior, decoder = onnx_session(exported, "prior"), onnx_session(exported, "decoder")
    codes = sample_codes(prior, 4, temperature=1.0, seed=7)
    assert codes.min() >= 0 and codes.max() < K
    assert np.array_equal(codes, sample_codes(prior, 4, temperature=1.0, seed=7))
    assert not np.array_equal(codes, sample_codes(prior, 4, temperature=1.0, seed=8))
    images = decoder.run(None, {"codes": codes})[0]
    assert images.shape == (4, 1, 28, 28) and images.dtype == np.float32
    assert np.isfinite(images).all() and images.min() >= 0.0 and images.max() <= 1.0
    # near-zero temperature: every position takes its most likely code, seed irrelevant
    cold = sample_codes(prior, 2, temperature=1e-4, seed=1)
    assert np.array_equal(cold, sample_codes(prior, 2, temperature=1e-4, seed=2))
    # one call on the finished map gives every position the logits it was sampled from
    # (they see only earlier codes), so greedy codes are that call's argmax everywhere
    logits = prior.run(None, {"codes": cold})[0]
    assert np.array_equal(cold, logits.argmax(1))


def test_encoder_then_decoder_reconstructs_like_eager(vq_run: Path, exported: Path) -> None:
    model = load_run(vq_run).model
    x = load_mnist().test[:8]
    image = (x.float() / 255).numpy()
    codes = onnx_session(exported, "encoder").run(None, {"image": image})[0]
    recon = onnx_session(exported, "decoder").run(None, {"codes": codes})[0]
    with torch.no_grad():
        eager_codes = model.encode_codes(torch.from_numpy(image))
        eager = model.decode_mean(eager_codes)
    assert np.array_equal(codes, eager_codes.numpy())
    np.testing.assert_allclose(recon, eager.numpy(), atol=1e-4)
    assert recon.shape == image.shape and recon.min() >= 0.0 and recon.max() <= 1.0


def test_log_prob_graph_matches_eager_evaluate(vq_run: Path, exported: Path) -> None:
    model = load_run(vq_run).model
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
