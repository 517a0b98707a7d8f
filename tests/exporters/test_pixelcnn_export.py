"""Pixel-level PixelCNN export: the manifest (pixels as the code map, position step, exact
likelihood) and the exported graphs against the eager model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from latentserve.exporters.export import export_run
from latentserve.training.checkpoint import load_run
from latentserve.training.data import load_mnist
from latentserve.training.evaluate import evaluate_model
from tiny_runs import onnx_session, train_tiny

from latentserve.manifest import Manifest


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny("pixelcnn-tiny", tmp_path_factory.mktemp("runs") / "pixelcnn", steps=10)


@pytest.fixture(scope="module")
def exported(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_run(run, tmp_path_factory.mktemp("models"), "pixelcnn")


def test_manifest_describes_pixels_as_the_code_map(exported: Path) -> None:
    manifest = Manifest.load(exported)
    assert manifest.family == "pixelcnn" and manifest.pipeline == "autoregressive_prior"
    assert manifest.capabilities == ["sample", "log_prob"]  # no encoder, no interpolation
    assert manifest.likelihood == "exact"
    [code_map] = manifest.codes
    assert (code_map.name, code_map.height, code_map.width) == ("pixels", 28, 28)
    assert (code_map.codebook_size, code_map.step) == (256, "position")
    io = {
        r: ([i.name for i in g.inputs], [o.name for o in g.outputs])
        for r, g in manifest.graphs.items()
    }
    assert io == {
        "prior": (["pixels", "position"], ["logits"]),
        "decoder": (["pixels"], ["image"]),
        "log_prob": (["image"], ["bits_per_dim"]),
    }
    assert manifest.graphs["prior"].outputs[0].shape == ["batch", 256]


def test_prior_graph_gives_the_full_networks_logits(run: Path, exported: Path) -> None:
    model = load_run(run).model.eval()
    pixels = load_mnist().test[:3, 0].long()
    with torch.no_grad():
        full = model.net(pixels).flatten(2).numpy()  # (3, 256, 784)
    session = onnx_session(exported, "prior")
    for position in (0, 27, 28, 400, 783):
        feeds = {"pixels": pixels.numpy(), "position": np.full(3, position, dtype=np.int64)}
        [logits] = session.run(["logits"], feeds)
        np.testing.assert_allclose(logits, full[:, :, position], atol=1e-4, rtol=1e-4)


def test_log_prob_graph_is_the_exact_test_code_length(run: Path, exported: Path) -> None:
    model = load_run(run).model
    images = load_mnist().test[:20]
    expected = evaluate_model(model, images, seed=0)["bits_per_dim"]
    [bits] = onnx_session(exported, "log_prob").run(
        ["bits_per_dim"], {"image": images.numpy().astype(np.float32) / 255.0}
    )
    assert float(bits.mean()) == pytest.approx(expected, rel=1e-5)
    [decoded] = onnx_session(exported, "decoder").run(
        ["image"], {"pixels": images[:, 0].long().numpy()}
    )
    np.testing.assert_array_equal(np.round(decoded * 255), images.numpy())
