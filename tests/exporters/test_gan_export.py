"""GAN export: the gan manifest, a sampler graph whose inputs are all its randomness plus
truncation and mixing, what each input does in the ONNX graph, TorchScript parity, and the
manifest rule that a gan pipeline has a generator section."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from latentserve.exporters.export import export_run
from latentserve.exporters.formats import load_torchscript
from latentserve.training.checkpoint import load_run
from pydantic import ValidationError
from tiny_runs import onnx_session, train_tiny

from latentserve.manifest import Manifest


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    runs, models = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("models")
    out = {}
    for name in ("dcgan-tiny", "stylegan2-tiny"):
        run = train_tiny(name, runs / name, steps=4)
        out[name] = (run, export_run(run, models, name))
    return out


def style_feeds(n: int, z_dim: int, noise: int, seed: int = 0, **overrides) -> dict:
    rng = np.random.default_rng(seed)
    feeds = {
        "z": rng.standard_normal((n, z_dim), dtype=np.float32),
        "truncation": np.ones(n, np.float32),
        "mix_z": rng.standard_normal((n, z_dim), dtype=np.float32),
        "mix_layer": np.full(n, 6, np.int64),
        "layer_noise": rng.standard_normal((n, noise), dtype=np.float32),
    }
    return feeds | overrides


def test_dcgan_manifest_and_sampler(exported: dict) -> None:
    _, folder = exported["dcgan-tiny"]
    manifest = Manifest.load(folder)
    assert (manifest.family, manifest.pipeline) == ("dcgan", "gan")
    assert manifest.capabilities == ["sample", "interpolate"] and manifest.likelihood is None
    assert manifest.generator.style_layers == 0 and manifest.latent.shape == [8]
    assert list(manifest.graphs) == ["sampler"]
    graph = manifest.graphs["sampler"]
    assert [(t.name, t.dtype, t.shape) for t in graph.inputs] == [
        ("z", "float32", ["batch", 8]),
        ("truncation", "float32", ["batch"]),
    ]
    assert set(graph.files) == {"onnx", "torchscript"}
    sampler = onnx_session(folder, "sampler")
    z = np.random.default_rng(0).standard_normal((3, 8), dtype=np.float32)
    [image] = sampler.run(["image"], {"z": z, "truncation": np.ones(3, np.float32)})
    assert image.shape == (3, 1, 28, 28) and image.min() >= 0.0 and image.max() <= 1.0
    [at_zero] = sampler.run(["image"], {"z": z, "truncation": np.zeros(3, np.float32)})
    [mean] = sampler.run(["image"], {"z": np.zeros_like(z), "truncation": np.ones(3, np.float32)})
    np.testing.assert_allclose(at_zero, mean, atol=1e-6)  # ψ = 0: the prior's mean


def test_stylegan_manifest_lists_every_random_input(exported: dict) -> None:
    run, folder = exported["stylegan2-tiny"]
    manifest = Manifest.load(folder)
    generator = load_run(run).model.ema.shadow
    assert (manifest.family, manifest.pipeline) == ("stylegan2", "gan")
    assert manifest.generator.style_layers == generator.num_ws == 6
    assert [(t.name, t.dtype, t.shape) for t in manifest.graphs["sampler"].inputs] == [
        ("z", "float32", ["batch", 8]),
        ("truncation", "float32", ["batch"]),
        ("mix_z", "float32", ["batch", 8]),
        ("mix_layer", "int64", ["batch"]),
        ("layer_noise", "float32", ["batch", 7 * 7 + 2 * 14 * 14 + 2 * 28 * 28]),
    ]


def test_stylegan_graph_inputs_do_what_they_say(exported: dict) -> None:
    _, folder = exported["stylegan2-tiny"]
    sampler = onnx_session(folder, "sampler")
    noise = 7 * 7 + 2 * 14 * 14 + 2 * 28 * 28

    def run(**overrides) -> np.ndarray:
        return sampler.run(["image"], style_feeds(4, 8, noise, **overrides))[0]

    base = run()
    assert base.shape == (4, 1, 28, 28)
    other_mix = np.random.default_rng(5).standard_normal((4, 8), dtype=np.float32)
    # mix_layer = style count: mix_z unused; 0: z unused
    np.testing.assert_array_equal(base, run(mix_z=other_mix))
    everything_mixed = run(mix_layer=np.zeros(4, np.int64))
    z = style_feeds(4, 8, noise)["z"]
    np.testing.assert_allclose(
        everything_mixed, run(mix_layer=np.zeros(4, np.int64), z=-z), atol=1e-6
    )
    assert not np.allclose(run(mix_layer=np.full(4, 3, np.int64)), base, atol=1e-4)
    # ψ = 0: every z maps to w_avg, so only the layer noise still differs
    flat = run(truncation=np.zeros(4, np.float32))
    np.testing.assert_allclose(flat, run(truncation=np.zeros(4, np.float32), z=-z), atol=1e-6)
    # the per-layer noise is an input: the graph draws nothing itself
    np.testing.assert_array_equal(base, run())


def test_torchscript_sampler_matches_onnx_on_another_batch_size(exported: dict) -> None:
    _, folder = exported["stylegan2-tiny"]
    feeds = style_feeds(7, 8, 7 * 7 + 2 * 14 * 14 + 2 * 28 * 28, seed=3)
    feeds["mix_layer"] = np.array([0, 1, 2, 3, 4, 5, 6], np.int64)
    [onnx_out] = onnx_session(folder, "sampler").run(["image"], feeds)
    with torch.no_grad():
        scripted = load_torchscript(folder / "sampler.pt")(
            *(torch.from_numpy(feeds[k]) for k in feeds)
        )
    np.testing.assert_allclose(scripted.numpy(), onnx_out, atol=1e-5)


def test_a_gan_manifest_needs_its_generator_section_and_only_it_has_one(exported: dict) -> None:
    _, folder = exported["dcgan-tiny"]
    data = Manifest.load(folder).model_dump(mode="json")
    with pytest.raises(ValidationError, match="generator section is required"):
        Manifest.model_validate(data | {"generator": None})
    with pytest.raises(ValidationError, match="generator section is required"):
        Manifest.model_validate(data | {"pipeline": "latent_decoder"})
