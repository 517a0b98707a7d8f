"""NVAE family: group shapes, residual posterior, KL warm-up and balancing, spectral
regularisation, training, exact resume and the importance-weighted bound."""

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
from latentserve.training.families.nvae import NVAE, NVAEConfig
from latentserve.training.families.nvae_cells import Normal, SpectralConv2d, residual_posterior
from latentserve.training.trainer import train
from safetensors.torch import load_file

MNIST = ImageShape(1, 28, 28)


def tiny_config(**overrides: object) -> NVAEConfig:
    model = load_config(builtin_config_path("nvae-tiny")).model
    return NVAEConfig(**{**model, **overrides})


def tiny_model(**overrides: object) -> NVAE:
    torch.manual_seed(0)
    return NVAE(tiny_config(**overrides), MNIST)


def test_group_shapes_and_sizes() -> None:
    model = tiny_model(groups_per_scale=3)
    assert model.latent_shapes == [(2, 7, 7)] * 3 + [(2, 14, 14)] * 3
    assert model.latent_dim == 3 * 2 * 49 + 3 * 2 * 196 == sum(model.latent_sizes)
    model.eval()
    x01 = load_mnist().test[:3].float() / 255.0
    means = model.encode_means(x01)
    assert [tuple(z.shape[1:]) for z in means] == model.latent_shapes
    image = model.decode_mean(means)
    assert image.shape == (3, 1, 28, 28) and image.min() >= 0.0 and image.max() <= 1.0
    flat = torch.randn(3, model.latent_dim)
    parts = model.split_flat(flat)
    assert torch.equal(torch.cat([p.flatten(1) for p in parts], 1), flat)
    assert model.sample(parts, torch.ones(3)).shape == (3, 1, 28, 28)
    with pytest.raises(ValueError, match="divisible by 2\\*\\*latent_scales = 8"):
        NVAE(tiny_config(latent_scales=3), MNIST)


def test_residual_posterior_and_kl() -> None:
    g = torch.Generator().manual_seed(0)
    prior = Normal(torch.randn(4, 2, 3, 3, generator=g), torch.randn(4, 2, 3, 3, generator=g))
    dmu, dls = torch.randn(2, 4, 2, 3, 3, generator=g)
    q = residual_posterior(prior, dmu, dls)
    assert torch.allclose(q.mu, prior.mu + dmu)
    assert torch.allclose(q.log_sigma.exp(), prior.log_sigma.exp() * dls.exp())
    dist = torch.distributions
    expected = dist.kl_divergence(
        dist.Normal(q.mu, q.log_sigma.exp()), dist.Normal(prior.mu, prior.log_sigma.exp())
    )
    assert torch.allclose(q.kl(prior), expected.flatten(1).sum(1), rtol=1e-5)
    z = q.at(torch.randn(q.mu.shape, generator=g))
    ref = dist.Normal(q.mu, q.log_sigma.exp()).log_prob(z).flatten(1).sum(1)
    assert torch.allclose(q.log_prob(z), ref, rtol=1e-5)


def test_model_posterior_is_prior_plus_encoder_residual() -> None:
    """With zeroed posterior heads the encoder adds nothing: q equals the prior, KL is 0."""
    model = tiny_model()
    model.eval()
    x = load_mnist().test[:4]
    _, draws = model.posterior_pass(x, lambda i, like: torch.zeros_like(like))
    assert any((q.mu - p.mu).abs().max() > 1e-3 for _, q, p in draws[1:])
    with torch.no_grad():
        for block in model.groups:
            head = block.posterior.net[-1]
            head.weight.zero_()
            head.bias.zero_()
    _, draws = model.posterior_pass(x, lambda i, like: torch.zeros_like(like))
    for z, q, p in draws:
        assert torch.equal(q.mu, p.mu) and torch.equal(q.log_sigma, p.log_sigma)
        assert torch.equal(z, p.mu)  # eps = 0 picks the mean
        assert q.kl(p).abs().max() < 1e-6
    assert draws[0][2].mu.abs().max() == 0  # the top group's prior is N(0, I)


def test_kl_warmup_schedule_counts_training_steps() -> None:
    model = tiny_model(kl_const_steps=2, kl_warmup_steps=4, kl_min_coeff=1e-3)
    x = load_mnist().train[:8]
    seen = []
    for _ in range(8):
        seen.append(model.training_step(x, torch.Generator().manual_seed(0)).metrics["kl_coeff"])
    assert seen == pytest.approx([1e-3, 1e-3, 1e-3, 0.25, 0.5, 0.75, 1.0, 1.0])
    assert int(model.state_dict()["step"]) == 8
    assert tiny_model(kl_warmup_steps=0).kl_coefficient() == 1.0


def test_kl_balancing_coefficients_and_loss() -> None:
    model = tiny_model(kl_warmup_steps=10, spectral_lambda=0.5)
    kl = torch.tensor([[1.0, 2.0, 30.0, 0.0], [3.0, 2.0, 10.0, 0.0]])
    gamma = model.balance_coefficients(kl)
    sizes = torch.tensor([98.0, 98.0, 392.0, 392.0])
    raw = sizes * (kl.mean(0) / sizes) + 0.01
    assert torch.allclose(gamma, raw / raw.mean())
    assert gamma.mean().item() == pytest.approx(1.0)
    assert gamma[3] < gamma[0] < gamma[2]  # the silent group is pushed least

    x = load_mnist().train[:16]
    with torch.no_grad():
        model.step.fill_(3)
    recon, kls = model._elbo_terms(x, torch.Generator().manual_seed(5))
    out = model.training_step(x, torch.Generator().manual_seed(5))
    beta = 0.3
    assert out.metrics["kl_coeff"] == pytest.approx(beta)
    balanced = (kls * model.balance_coefficients(kls)).sum(1)
    nats = (recon + beta * balanced).mean() + 0.5 * out.metrics["spectral_sum"]
    assert out.loss.item() == pytest.approx(nats.item() / 784, rel=1e-5)
    elbo_bpd = (recon + kls.sum(1)).mean().item() / (784 * math.log(2))
    assert out.metrics["bits_per_dim"] == pytest.approx(elbo_bpd, rel=1e-5)


@pytest.mark.parametrize(("shape", "groups"), [((16, 8, 3, 3), 1), ((12, 1, 5, 5), 12)])
def test_spectral_norm_estimate(shape: tuple[int, ...], groups: int) -> None:
    torch.manual_seed(0)
    conv = SpectralConv2d(shape[1] * groups, shape[0], shape[2], groups=groups)
    assert conv.weight.shape == shape
    exact = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2).item()
    u_before = conv.sn_u.clone()
    first = conv.spectral_norm(1)
    assert not torch.equal(conv.sn_u, u_before) and first.item() <= exact + 1e-5
    estimate = conv.spectral_norm(100)
    assert estimate.item() == pytest.approx(exact, rel=1e-4)
    estimate.backward()  # differentiable in the weight: the regulariser can shrink it
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_spectral_loss_covers_every_conv_and_one_iteration_per_step() -> None:
    model = tiny_model()
    convs = [m for m in model.modules() if isinstance(m, SpectralConv2d)]
    assert len(convs) > 20
    before = [c.sn_u.clone() for c in convs]
    model.training_step(load_mnist().train[:8], torch.Generator().manual_seed(0))
    assert all(not torch.equal(c.sn_u, b) for c, b in zip(convs, before, strict=True))
    assert "sn_u" in "".join(model.state_dict())  # vectors travel in the checkpoint


def test_training_lowers_loss_and_resume_is_exact(tmp_path: Path) -> None:
    config = load_config(builtin_config_path("nvae-tiny"))
    test = load_mnist().test
    torch.manual_seed(config.seed)
    before = evaluate_model(ckpt.build_model(config), test, seed=0)["bits_per_dim"]
    result = train(config, tmp_path / "run", progress=False)
    after = result.test_metrics["bits_per_dim"]
    assert after < before - 1.0, (before, after)
    losses = [
        r["bits_per_dim"] for r in ckpt.read_metrics(tmp_path / "run") if r["event"] == "train"
    ]
    assert losses[-1] < losses[0]

    short = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=6))
    train(short, tmp_path / "straight", progress=False)
    train(short, tmp_path / "resumed", stop_at=3, progress=False)
    assert int(load_file(str(tmp_path / "resumed" / ckpt.CHECKPOINT))["step"]) == 3
    train(short, tmp_path / "resumed", resume=True, progress=False)
    a = load_file(str(tmp_path / "straight" / ckpt.CHECKPOINT))
    b = load_file(str(tmp_path / "resumed" / ckpt.CHECKPOINT))
    assert int(a["step"]) == 6
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_evaluate_iw_bound_is_below_elbo_on_average() -> None:
    model = tiny_model()
    x = load_mnist().train[:32]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(5):  # move off the init so the posterior is not the prior
        loss = model.training_step(x, torch.Generator().manual_seed(step)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    metrics = evaluate_model(model, load_mnist().test[:100], seed=0, iw_k=8)
    assert set(metrics) == {
        "bits_per_dim",
        "recon_bits_per_dim",
        "kl_bits_per_dim",
        "iw8_bits_per_dim",
    }
    assert metrics["bits_per_dim"] == pytest.approx(
        metrics["recon_bits_per_dim"] + metrics["kl_bits_per_dim"]
    )
    assert metrics["iw8_bits_per_dim"] < metrics["bits_per_dim"]
    assert evaluate_model(model, load_mnist().test[:100], seed=0, iw_k=8) == metrics


def test_batchnorm_weight_regularisation_is_optional() -> None:
    model = tiny_model(kl_warmup_steps=0, spectral_lambda=0.0, bn_lambda=0.1)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        bns[0].weight[0] = -3.0  # max |weight| of that layer: 3, the others stay at 1
    assert model.batchnorm_loss().item() == pytest.approx(len(bns) - 1 + 3.0)
    x = load_mnist().train[:8]
    recon, kl = model._elbo_terms(x, torch.Generator().manual_seed(2))
    loss = model.training_step(x, torch.Generator().manual_seed(2)).loss
    expected = (recon + kl.sum(1)).mean() + 0.1 * (len(bns) + 2.0)
    assert loss.item() == pytest.approx(expected.item() / 784, rel=1e-5)
