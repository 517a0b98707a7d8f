"""Glow export: manifest, parity, exact round trips and densities through ONNX Runtime."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from latentserve.exporters.export import export_run
from latentserve.exporters.formats import export_onnx, export_torchscript
from latentserve.exporters.parity import TOLERANCE, check_parity
from latentserve.exporters.recipes import get_recipe
from latentserve.exporters.recipes.glow import frozen_flow
from latentserve.training.checkpoint import load_run
from latentserve.training.data import load_mnist
from latentserve.training.families.glow import Glow
from tiny_runs import TinyRuns, onnx_session

from latentserve.manifest import Manifest


@pytest.fixture(scope="module")
def glow_run(tiny_runs: TinyRuns) -> Path:
    return tiny_runs.run("glow-tiny")


@pytest.fixture(scope="module")
def exported(glow_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_run(glow_run, tmp_path_factory.mktemp("models"), "glow")


@pytest.fixture(scope="module")
def model(glow_run: Path) -> Glow:
    return load_run(glow_run).model.eval()


def as_image(levels: np.ndarray) -> np.ndarray:
    """uint8 levels → float32 image in [0, 1], as the server decodes a PNG."""
    return (levels.astype(np.float32) / 255.0).astype(np.float32)


def bits_per_dim_at_bin_centres(model: Glow, levels: torch.Tensor) -> torch.Tensor:
    """The exact density of the trained (unfrozen) eager model at ``(k + 1/2) / 256 - 1/2``."""
    x = (levels.to(torch.float32) + 0.5) / 256 - 0.5
    with torch.no_grad():
        out = model.encode(x)
    dims = model.image.dims
    return (-(out.log_prior + out.logdet) + dims * math.log(256)) / (dims * math.log(2))


def prior_latents(
    model: Glow, noises: list[torch.Tensor], temperature: torch.Tensor
) -> list[torch.Tensor]:
    """The latents the sampler should decode: top level scaled noise, split priors below."""
    latents: list[torch.Tensor] = [torch.empty(0)] * len(noises)
    x = None
    with torch.no_grad():
        for i in reversed(range(len(model.levels))):
            level = model.levels[i]
            if level.split is None:
                z = noises[i] * temperature.view(-1, 1, 1, 1)
            else:
                z = level.split.sample_z(x, noises[i], temperature)
            latents[i] = z
            x = level.reverse(x, z)
    return latents


def test_manifest_describes_an_exact_flow(exported: Path, model: Glow) -> None:
    manifest = Manifest.load(exported)
    assert (manifest.family, manifest.pipeline, manifest.likelihood) == (
        "glow",
        "latent_decoder",
        "elbo",  # exact density, bound on the 8-bit code length through dequantization
    )
    assert manifest.capabilities == [
        "sample",
        "encode",
        "reconstruct",
        "log_prob",
        "interpolate",
    ]
    assert manifest.latent.shape == [784]
    groups = [(g.name, g.shape) for g in manifest.latent.groups]
    assert groups == [(f"z{i}", list(s)) for i, s in enumerate(model.latent_shapes)]
    assert len(groups) == 2 and sum(math.prod(s) for _, s in groups) == 784
    graphs = manifest.graphs
    assert [s.name for s in graphs["encoder"].outputs] == ["z0", "z1"]
    assert [s.name for s in graphs["decoder"].inputs] == ["z0", "z1"]
    assert [s.name for s in graphs["sampler"].inputs] == ["noise", "temperature"]
    assert [s.name for s in graphs["log_prob"].inputs] == ["image", "noise"]
    assert [s.name for s in graphs["log_prob"].outputs] == ["bits_per_dim"]
    for role, graph in graphs.items():
        proto = onnx.load(str(exported / graph.files["onnx"].path))
        onnx.checker.check_model(proto)
        ops = {node.op_type for node in proto.graph.node}
        assert not ops & {"RandomNormal", "RandomNormalLike", "RandomUniform"}, role
        assert [i.name for i in onnx_session(exported, role).get_inputs()] == [
            s.name for s in graph.inputs
        ]


def test_parity_of_each_graph(glow_run: Path, tmp_path: Path) -> None:
    plans = get_recipe("glow").plan(load_run(glow_run).model).graphs
    assert [p.role for p in plans] == ["encoder", "decoder", "sampler", "log_prob"]
    for plan in plans:
        example = plan.example_inputs(3, torch.Generator().manual_seed(1))
        export_onnx(plan.module, example, plan.inputs, plan.outputs, tmp_path / "g.onnx")
        export_torchscript(plan.module, example, tmp_path / "g.pt")
        diffs = check_parity(plan, tmp_path / "g.onnx", tmp_path / "g.pt", seed=7)
        assert max(diffs.values()) <= TOLERANCE, (plan.role, diffs)


def test_frozen_flow_computes_what_the_trained_flow_computes(model: Glow) -> None:
    frozen = frozen_flow(model)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0)) - 0.5
    with torch.no_grad():
        want, got = model.encode(x), frozen.encode(x)
        torch.testing.assert_close(got.logdet, want.logdet, rtol=1e-5, atol=1e-3)
        for a, b in zip(got.latents, want.latents, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(frozen.decode(want.latents), x, rtol=0, atol=1e-4)
    assert any(p.requires_grad for p in model.parameters())  # the original is untouched


@pytest.mark.parametrize("source", ["mnist", "random"])
def test_onnx_reconstruct_round_trips_8bit_images(exported: Path, source: str) -> None:
    if source == "mnist":
        levels = load_mnist().test[::10].numpy()  # 50 real test digits, all ten classes
    else:
        levels = np.random.default_rng(0).integers(0, 256, (16, 1, 28, 28), dtype=np.uint8)
    image = as_image(levels)
    latents = onnx_session(exported, "encoder").run(None, {"image": image})
    assert [z.shape[0] for z in latents] == [len(image)] * 2
    decoded = onnx_session(exported, "decoder").run(None, {"z0": latents[0], "z1": latents[1]})[0]
    assert decoded.shape == image.shape
    assert np.abs(np.rint(decoded * 255) / 255 - image).max() <= 1e-3
    # continuous output: within a small fraction of a level of the input before rounding
    assert np.abs(decoded - image).max() < 0.1 / 255


def test_sampler_decodes_the_prior_latents_of_its_noise(exported: Path, model: Glow) -> None:
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((4, 784)).astype(np.float32)
    temperature = np.array([0.0, 0.5, 0.8, 1.0], dtype=np.float32)
    sampler = onnx_session(exported, "sampler")
    sampled = sampler.run(None, {"noise": noise, "temperature": temperature})[0]
    # the flat noise is cut into the groups finest first, in manifest order
    flat = torch.from_numpy(noise)
    noises = [flat[:, :392].reshape(4, 2, 14, 14), flat[:, 392:].reshape(4, 8, 7, 7)]
    assert [tuple(n.shape[1:]) for n in noises] == model.latent_shapes
    latents = prior_latents(model, noises, torch.from_numpy(temperature))
    feeds = {f"z{i}": z.numpy() for i, z in enumerate(latents)}
    decoded = onnx_session(exported, "decoder").run(None, feeds)[0]
    np.testing.assert_allclose(sampled, decoded, atol=1e-5)
    with torch.no_grad():  # and the precomputed inverse is the trained model's inverse
        eager = ((model.decode(latents) + 0.5) * 256 - 0.5) / 255
    np.testing.assert_allclose(decoded, eager.clamp(0, 1).numpy(), atol=1e-4)
    assert np.all(latents[1][0].numpy() == 0.0)  # temperature 0: the top latent is 0

    other = rng.standard_normal((4, 784)).astype(np.float32)
    resampled = onnx_session(exported, "sampler").run(
        None, {"noise": other, "temperature": temperature}
    )[0]
    np.testing.assert_allclose(resampled[0], sampled[0], atol=1e-5)  # T = 0 ignores noise
    assert np.abs(resampled[1:] - sampled[1:]).max() > 0.1


def test_log_prob_is_the_flows_density_over_dequantization_noise(
    exported: Path, model: Glow
) -> None:
    digits = load_mnist().test[:16]
    uniform = torch.randint(0, 256, (16, 1, 28, 28), generator=torch.Generator().manual_seed(2))
    graph = onnx_session(exported, "log_prob")
    rng = np.random.default_rng(0)
    for levels in (digits, uniform.to(torch.uint8)):
        noise = rng.standard_normal((16, 1, 784)).astype(np.float32)
        bpd = graph.run(None, {"image": as_image(levels.numpy()), "noise": noise})[0]
        # the same dequantized points through the trained eager model
        u = 0.5 * (1 + torch.erf(torch.from_numpy(noise[:, 0]) / math.sqrt(2)))
        y = levels.flatten(1).float() + u.clamp(max=1 - 1e-6)
        with torch.no_grad():
            out = model.encode((y / 256 - 0.5).view(-1, 1, 28, 28))
        nats = -(out.log_prior + out.logdet) + 784 * math.log(256)
        np.testing.assert_allclose(bpd, (nats / (784 * math.log(2))).numpy(), atol=1e-3)
    noise = rng.standard_normal((16, 8, 784)).astype(np.float32)
    digit_iw = graph.run(None, {"image": as_image(digits.numpy()), "noise": noise})[0]
    uniform_iw = graph.run(
        None, {"image": as_image(uniform.to(torch.uint8).numpy()), "noise": noise}
    )[0]
    assert uniform_iw.min() > 7.9  # no model codes uniform bytes in fewer than ~8 bits
    assert digit_iw.max() < uniform_iw.min()
    centres = bits_per_dim_at_bin_centres(model, digits).numpy()
    assert np.mean(digit_iw) > np.mean(centres)  # the bin-centre density bounds nothing
