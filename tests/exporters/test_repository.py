"""The tiny repository fixture is a real, valid model repository."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from latentserve.manifest import Manifest, sha256_file


def test_tiny_repository_layout_and_manifests(tiny_repository: Path) -> None:
    versions = sorted(str(p.relative_to(tiny_repository)) for p in tiny_repository.glob("*/*"))
    assert versions == ["ae-tiny/1", "vae-tiny/1", "vae-tiny/2"]
    for folder in tiny_repository.glob("*/*"):
        manifest = Manifest.load(folder)
        assert (manifest.name, manifest.version) == (folder.parent.name, folder.name)
        assert manifest.pipeline == "latent_decoder"
        assert manifest.image.value_range == (0.0, 1.0)
        assert manifest.provenance.dataset == "mnist"
        assert manifest.provenance.config["family"] == manifest.family
        for graph in manifest.graphs.values():
            for file in graph.files.values():
                assert sha256_file(folder / file.path) == file.sha256


def test_vae_has_sampler_and_ae_does_not(tiny_repository: Path) -> None:
    vae = Manifest.load(tiny_repository / "vae-tiny" / "1")
    ae = Manifest.load(tiny_repository / "ae-tiny" / "1")
    assert set(vae.graphs) == {"encoder", "decoder", "sampler", "log_prob"}
    assert vae.likelihood == "elbo" and "log_prob" in vae.capabilities
    assert "sample" in vae.capabilities
    assert "bits_per_dim" in vae.provenance.metrics
    assert set(ae.graphs) == {"encoder", "decoder"}
    assert "sample" not in ae.capabilities and "log_prob" not in ae.capabilities
    assert ae.likelihood is None
    assert not (tiny_repository / "ae-tiny" / "1" / "sampler.onnx").exists()
    assert [o.name for o in ae.graphs["encoder"].outputs] == ["latent"]
    assert [o.name for o in vae.graphs["encoder"].outputs] == ["latent", "logvar"]


def test_versions_are_different_models(tiny_repository: Path) -> None:
    noise = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    temperature = np.ones(3, dtype=np.float32)
    images = []
    for version in ("1", "2"):
        session = ort.InferenceSession(
            str(tiny_repository / "vae-tiny" / version / "sampler.onnx"),
            providers=["CPUExecutionProvider"],
        )
        (image,) = session.run(["image"], {"noise": noise, "temperature": temperature})
        assert image.shape == (3, 1, 28, 28)
        assert image.min() >= 0.0 and image.max() <= 1.0
        images.append(image)
    assert np.abs(images[0] - images[1]).max() > 1e-3
