"""KL autoencoder export: the latent_decoder manifest with its latent scale, and an image
round trip through the ONNX encoder and decoder that matches eager PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from latentserve.exporters.export import export_run
from latentserve.training.checkpoint import load_run
from latentserve.training.data import load_mnist
from latentserve.training.trainer import train
from tiny_runs import onnx_session, tiny_config, train_tiny

from latentserve.manifest import Manifest


@pytest.fixture(scope="module")
def klae_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny("klae-tiny", tmp_path_factory.mktemp("runs") / "klae", steps=10)


@pytest.fixture(scope="module")
def exported(klae_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_run(klae_run, tmp_path_factory.mktemp("models"), "klae")


def test_manifest_describes_encoder_decoder_and_scale(klae_run: Path, exported: Path) -> None:
    manifest = Manifest.load(exported)
    assert (manifest.family, manifest.pipeline) == ("klae", "latent_decoder")
    assert manifest.capabilities == ["encode", "reconstruct"] and manifest.likelihood is None
    assert manifest.latent.shape == [4, 7, 7] and manifest.noise_schedule is None
    assert {
        role: ([i.name for i in g.inputs], [o.name for o in g.outputs])
        for role, g in manifest.graphs.items()
    } == {
        "encoder": (["image"], ["latent"]),
        "decoder": (["latent"], ["image"]),
    }
    assert manifest.graphs["decoder"].inputs[0].shape == ["batch", 4, 7, 7]
    metrics = manifest.provenance.metrics
    assert metrics["latent_scale"] == pytest.approx(float(load_run(klae_run).model.latent_scale))
    assert {"recon_mse", "psnr_db"} <= set(metrics)


def test_onnx_round_trip_matches_eager(klae_run: Path, exported: Path) -> None:
    model = load_run(klae_run).model
    images = load_mnist().test[::50].float() / 255  # one of each digit
    latent = onnx_session(exported, "encoder").run(None, {"image": images.numpy()})[0]
    rebuilt = onnx_session(exported, "decoder").run(None, {"latent": latent})[0]
    with torch.no_grad():
        code = model.encode(images)
        expected = model.decode(code)
    np.testing.assert_allclose(latent, code.numpy(), atol=1e-4)
    np.testing.assert_allclose(rebuilt, expected.numpy(), atol=1e-4)
    assert rebuilt.shape == (10, 1, 28, 28) and rebuilt.min() >= 0 and rebuilt.max() <= 1


def test_an_unfinished_run_is_not_exported(tmp_path: Path) -> None:
    train(tiny_config("klae-tiny"), tmp_path / "half", stop_at=2, progress=False)
    with pytest.raises(ValueError, match="no latent scale yet"):
        export_run(tmp_path / "half", tmp_path / "models", "half")
    assert not list((tmp_path / "models" / "half").iterdir())  # nothing half-written
