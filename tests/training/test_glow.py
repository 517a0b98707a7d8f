"""Glow and its NICE / RealNVP configurations: invertibility, exact log-determinants,
actnorm's data-dependent init, honest bits/dim, training, checkpoints and sampling."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from latentserve.training import checkpoint as ckpt
from latentserve.training.config import builtin_config_path, load_config
from latentserve.training.data import load_mnist
from latentserve.training.evaluate import evaluate_model
from latentserve.training.families import ImageShape
from latentserve.training.families.flows import (
    ActNorm,
    Coupling,
    FlowStep,
    InvConv1x1,
    Permute,
    squeeze,
    unsqueeze,
)
from latentserve.training.families.glow import Glow, GlowConfig
from latentserve.training.trainer import train
from safetensors.torch import load_file

VARIANTS = {
    "glow": {"coupling": "affine", "permutation": "invconv", "actnorm": True},
    "realnvp": {"coupling": "affine", "permutation": "reverse", "actnorm": False},
    "nice": {"coupling": "additive", "permutation": "shuffle", "actnorm": False},
}


def perturb(module: torch.nn.Module, scale: float = 0.1) -> None:
    """Move every parameter off its init (zero convs make fresh couplings the identity)."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator, dtype=p.dtype))


def numerical_logdet(f, x: torch.Tensor, eps: float = 1e-5) -> float:
    """``log|det J|`` of ``f`` at a single item ``x`` by central differences (float64)."""
    flat = x.flatten()
    columns = []
    for i in range(flat.numel()):
        step = torch.zeros_like(flat)
        step[i] = eps
        plus = f((flat + step).view_as(x)).flatten()
        minus = f((flat - step).view_as(x)).flatten()
        columns.append((plus - minus) / (2 * eps))
    sign, logabsdet = torch.linalg.slogdet(torch.stack(columns, dim=1))
    assert sign != 0
    return logabsdet.item()


def tiny_glow(image: ImageShape, levels: int, **variant: object) -> Glow:
    torch.manual_seed(0)
    config = GlowConfig(levels=levels, steps_per_level=2, hidden_channels=8, **variant)
    return Glow(config, image)


def test_squeeze_round_trips() -> None:
    x = torch.randn(2, 3, 4, 6)
    assert squeeze(x).shape == (2, 12, 2, 3)
    assert torch.equal(unsqueeze(squeeze(x)), x)


LAYERS = {
    "actnorm": lambda: ActNorm(4),
    "invconv": lambda: InvConv1x1(4),
    "reverse": lambda: Permute(4, "reverse"),
    "shuffle": lambda: Permute(4, "shuffle"),
    "additive": lambda: Coupling(4, 8, "additive"),
    "affine": lambda: Coupling(4, 8, "affine"),
    "step": lambda: FlowStep(4, 8, "affine", "invconv", actnorm=True),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_logdet_matches_numerical_jacobian(name: str) -> None:
    torch.manual_seed(0)
    layer = LAYERS[name]().double()
    perturb(layer)
    layer.eval()
    x = torch.randn(1, 4, 2, 3, dtype=torch.float64)
    y, logdet = layer(x)
    expected = numerical_logdet(lambda v: layer(v)[0], x)
    assert logdet.shape == (1,)
    assert logdet.item() == pytest.approx(expected, abs=1e-6)
    assert torch.allclose(layer.reverse(y), x, atol=1e-10)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_whole_flow_logdet_matches_numerical_jacobian(variant: str) -> None:
    model = tiny_glow(ImageShape(1, 4, 4), levels=2, **VARIANTS[variant]).double()
    model.train()
    model.encode(torch.randn(8, 1, 4, 4, dtype=torch.float64))  # actnorm init
    perturb(model)
    model.eval()
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64) - 0.5

    def flat_latents(v: torch.Tensor) -> torch.Tensor:
        return torch.cat([z.flatten() for z in model.encode(v).latents])

    out = model.encode(x)
    assert sum(z[0].numel() for z in out.latents) == 16
    assert out.logdet.item() == pytest.approx(numerical_logdet(flat_latents, x), abs=1e-6)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize(
    ("image", "levels"), [(ImageShape(1, 28, 28), 2), (ImageShape(3, 32, 32), 3)]
)
def test_forward_then_inverse_reconstructs(variant: str, image: ImageShape, levels: int) -> None:
    model = tiny_glow(image, levels, **VARIANTS[variant])
    x = torch.randint(0, 256, (4, image.channels, image.height, image.width), dtype=torch.uint8)
    y = model.dequantize(x, torch.Generator().manual_seed(0))
    model.train()
    model.encode(y)  # actnorm init
    perturb(model, 0.05)
    model.eval()
    out = model.encode(y)
    assert [tuple(z.shape[1:]) for z in out.latents] == model.latent_shapes
    assert sum(math.prod(s) for s in model.latent_shapes) == image.dims
    assert (model.decode(out.latents) - y).abs().max().item() < 1e-4
    if variant == "nice":  # additive coupling + permutations only: volume-preserving
        assert out.logdet.abs().max().item() == 0.0


def test_affine_scale_is_bounded_so_the_inverse_stays_finite() -> None:
    coupling = Coupling(4, 8, "affine")
    with torch.no_grad():
        coupling.net[-1].bias[2:].fill_(-1e4)  # the log-scale half: far off the data
    y = torch.randn(2, 4, 3, 3)
    _, scale = coupling._shift_scale(y[:, :2])
    assert scale.min().item() == pytest.approx(torch.sigmoid(torch.tensor(-2.0)).item())
    assert torch.isfinite(coupling.reverse(y)).all()


def test_actnorm_data_dependent_init() -> None:
    layer = ActNorm(3)
    x = 5.0 + 3.0 * torch.randn(64, 3, 8, 8)
    layer.eval()
    y, _ = layer(x)
    assert torch.equal(y, x) and not bool(layer.initialized)  # eval never initialises
    layer.train()
    y, _ = layer(x)
    assert bool(layer.initialized)
    assert y.mean(dim=(0, 2, 3)).abs().max().item() < 1e-5
    assert (y.std(dim=(0, 2, 3), unbiased=False) - 1.0).abs().max().item() < 1e-4
    bias = layer.bias.detach().clone()
    layer(torch.randn(64, 3, 8, 8))  # a second batch does not re-initialise
    assert torch.equal(layer.bias, bias)


def test_bits_per_dim_matches_closed_form_for_the_identity_flow() -> None:
    """Volume-preserving identity-like flow: -log p_X is a standard normal's, in closed form."""
    # Fresh additive couplings output zero shifts and split priors start at N(0, 1), so
    # without actnorm the flow is a channel permutation: log p_X(x) = log N(x; 0, I).
    model = tiny_glow(
        ImageShape(1, 28, 28), 2, coupling="additive", permutation="reverse", actnorm=False
    )
    x = load_mnist().test[:16]
    nats = model.evaluate(x, torch.Generator().manual_seed(3))["bits_per_dim"]
    y = model.dequantize(x, torch.Generator().manual_seed(3))
    expected = 0.5 * (y.square() + math.log(2 * math.pi)).flatten(1).sum(1) + 784 * math.log(256)
    assert torch.allclose(nats, expected, rtol=1e-5)


def test_bits_per_dim_is_plausible_on_uniform_noise() -> None:
    # No model codes uniformly random bytes in fewer than 8 bits/dim; an honest bound
    # lands just above that, and evaluation is deterministic given its seed.
    model = tiny_glow(ImageShape(1, 28, 28), 2)
    noise = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    metrics = evaluate_model(model, noise, seed=0, iw_k=4)
    assert 7.95 < metrics["iw4_bits_per_dim"] <= metrics["bits_per_dim"] + 0.01 < 12.0
    assert evaluate_model(model, noise, seed=0, iw_k=4) == metrics


def test_trainer_lowers_bits_per_dim_and_checkpoint_keeps_actnorm(tmp_path: Path) -> None:
    config = load_config(builtin_config_path("glow-tiny"))
    torch.manual_seed(config.seed)
    test = load_mnist().test
    untrained = ckpt.build_model(config)
    before = evaluate_model(untrained, test, seed=0)["bits_per_dim"]
    result = train(config, tmp_path / "run", progress=False)
    after = result.test_metrics["bits_per_dim"]
    assert 0.5 < after < before - 1.0, (before, after)
    losses = [
        r["bits_per_dim"] for r in ckpt.read_metrics(tmp_path / "run") if r["event"] == "train"
    ]
    assert losses[-1] < losses[0]

    run = ckpt.load_run(tmp_path / "run")
    actnorms = [m for m in run.model.modules() if isinstance(m, ActNorm)]
    assert actnorms and all(bool(m.initialized) for m in actnorms)
    saved = load_file(str(tmp_path / "run" / ckpt.CHECKPOINT))
    run.model.train()
    run.model.training_step(test[:32], torch.Generator().manual_seed(0))  # no re-init
    assert all(torch.equal(v, saved[k]) for k, v in run.model.state_dict().items())
    assert evaluate_model(run.model, test, seed=0)["bits_per_dim"] == pytest.approx(after)


def test_resume_does_not_reinitialise_actnorm(tmp_path: Path) -> None:
    config = load_config(builtin_config_path("glow-tiny"))
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=6))
    train(config, tmp_path / "straight", progress=False)
    train(config, tmp_path / "resumed", stop_at=3, progress=False)
    train(config, tmp_path / "resumed", resume=True, progress=False)
    a = load_file(str(tmp_path / "straight" / ckpt.CHECKPOINT))
    b = load_file(str(tmp_path / "resumed" / ckpt.CHECKPOINT))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sampling_temperature() -> None:
    model = tiny_glow(ImageShape(1, 28, 28), 2)
    perturb(model, 0.05)
    model.eval()
    g = torch.Generator().manual_seed(0)
    noise_a, noise_b = model.draw_noise(3, g), model.draw_noise(3, g)
    hot = model.sample(noise_a, torch.full((3,), 0.8))
    assert hot.shape == (3, 1, 28, 28) and hot.min() >= 0.0 and hot.max() <= 1.0
    assert torch.equal(hot, model.sample(noise_a, torch.full((3,), 0.8)))
    assert not torch.equal(hot, model.sample(noise_b, torch.full((3,), 0.8)))
    cold = torch.zeros(3)  # temperature 0: every latent at its prior mean, noise ignored
    assert torch.allclose(model.sample(noise_a, cold), model.sample(noise_b, cold), atol=1e-6)


def test_builtin_glow_configs_build_and_levels_must_divide() -> None:
    for name in ("glow-mnist", "glow-tiny"):
        model = ckpt.build_model(load_config(builtin_config_path(name)))
        assert isinstance(model, Glow) and model.has_prior
    with pytest.raises(ValueError, match="divisible by 2\\*\\*levels = 8"):
        Glow(GlowConfig(levels=3), ImageShape(1, 28, 28))
