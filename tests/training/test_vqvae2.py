"""VQ-VAE-2: code-map shapes, causality of both priors (the bottom one conditioned on the
top map), the three-part honest bound, and tiny training."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from latentserve.training import checkpoint as ckpt
from latentserve.training.config import builtin_config_path, load_config
from latentserve.training.data import load_mnist
from latentserve.training.evaluate import evaluate_model
from latentserve.training.families import ImageShape
from latentserve.training.families.vqvae2 import VQVAE2, VQVAE2Config
from latentserve.training.trainer import train
from safetensors.torch import load_file

MNIST = ImageShape(1, 28, 28)
SMALL = VQVAE2Config(
    num_codes_top=6,
    num_codes_bottom=10,
    code_dim=4,
    hidden=8,
    res_blocks=1,
    prior_top_channels=16,  # narrower heads can start with every unit of a position dead
    prior_top_layers=3,
    prior_bottom_channels=16,
    prior_bottom_layers=3,
    cond_channels=4,
)


@pytest.fixture(scope="module")
def model() -> VQVAE2:
    torch.manual_seed(0)
    return VQVAE2(SMALL, MNIST).eval()


def random_codes(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    top = torch.randint(0, SMALL.num_codes_top, (n, 7, 7), generator=generator)
    bottom = torch.randint(0, SMALL.num_codes_bottom, (n, 14, 14), generator=generator)
    return top, bottom


def test_shapes_of_codes_images_and_logits(model: VQVAE2) -> None:
    x = load_mnist().test[:5]
    codes_top, codes_bottom = model.encode_codes(x.float() / 255)
    assert codes_top.shape == (5, 7, 7) and codes_bottom.shape == (5, 14, 14)
    assert codes_top.dtype == codes_bottom.dtype == torch.int64
    assert codes_top.min() >= 0 and codes_top.max() < SMALL.num_codes_top
    assert codes_bottom.min() >= 0 and codes_bottom.max() < SMALL.num_codes_bottom
    loc, log_scale = model.decode_codes(codes_top, codes_bottom)
    assert loc.shape == log_scale.shape == (5, 1, 28, 28)
    image = model.decode_mean(codes_top, codes_bottom)
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert model.prior_top(codes_top).shape == (5, SMALL.num_codes_top, 7, 7)
    logits = model.prior_bottom(codes_bottom, codes_top)
    assert logits.shape == (5, SMALL.num_codes_bottom, 14, 14)


def test_top_prior_with_attention_is_causal(model: VQVAE2) -> None:
    attention = model.prior_top.attention
    assert attention is not None
    g = torch.Generator().manual_seed(1)
    codes, _ = random_codes(3, g)
    base = model.prior_top(codes).flatten(2)
    for p in range(49):
        changed = codes.clone().flatten(1)
        changed[:, p:] = torch.randint(0, SMALL.num_codes_top, changed[:, p:].shape, generator=g)
        after = model.prior_top(changed.view_as(codes)).flatten(2)
        assert torch.allclose(after[:, :, : p + 1], base[:, :, : p + 1], atol=1e-6), p
    # Three 3x3 layers reach a few rows up; attention carries the first code to the last.
    first = codes.clone()
    first[:, 0, 0] = (first[:, 0, 0] + 1) % SMALL.num_codes_top
    moved = (model.prior_top(first).flatten(2) - base).abs().amax(1)
    assert moved[:, 0].max() == 0.0 and torch.all(moved[:, 48] > 0)
    model.prior_top.attention = None  # without it the last position cannot see that far
    try:
        assert torch.equal(model.prior_top(first)[:, :, 6, 6], model.prior_top(codes)[:, :, 6, 6])
    finally:
        model.prior_top.attention = attention


def test_bottom_prior_is_causal_in_bottom_codes_and_sees_the_top_map(model: VQVAE2) -> None:
    g = torch.Generator().manual_seed(2)
    top, bottom = random_codes(3, g)
    base = model.prior_bottom(bottom, top).flatten(2)
    for p in range(0, 196, 7):
        changed = bottom.clone().flatten(1)
        high = SMALL.num_codes_bottom
        changed[:, p:] = torch.randint(0, high, changed[:, p:].shape, generator=g)
        after = model.prior_bottom(changed.view_as(bottom), top).flatten(2)
        assert torch.allclose(after[:, :, : p + 1], base[:, :, : p + 1], atol=1e-6), p
    # Every position, the first included, depends on the top codes (the whole map is known).
    other_top = (top + 1) % SMALL.num_codes_top
    moved = (model.prior_bottom(bottom, other_top).flatten(2) - base).abs().amax(1)
    assert torch.all(moved > 0), moved.min()
    # ...and one top code is enough: the one above bottom position 0 moves its logits.
    near = top.clone()
    near[:, 0, 0] = (near[:, 0, 0] + 1) % SMALL.num_codes_top
    first = model.prior_bottom(bottom, near).flatten(2)[:, :, 0]
    assert not torch.allclose(first, base[:, :, 0])


def test_evaluate_parts_sum_to_the_total(model: VQVAE2) -> None:
    x = load_mnist().test[:6]
    out = model.evaluate(x, torch.Generator())
    parts = ("recon_bits_per_dim", "prior_top_bits_per_dim", "prior_bottom_bits_per_dim")
    assert torch.allclose(out["bits_per_dim"], sum(out[k] for k in parts))
    assert all(torch.all(out[k] > 0) for k in parts)
    codes_top, codes_bottom = model.encode_codes(x.float() / 255)
    # an untrained prior is near uniform: about log K nats per code
    per_top = out["prior_top_bits_per_dim"] / 49
    per_bottom = out["prior_bottom_bits_per_dim"] / 196
    assert torch.all((per_top - math.log(SMALL.num_codes_top)).abs() < 0.5)
    assert torch.all((per_bottom - math.log(SMALL.num_codes_bottom)).abs() < 0.5)
    # the prior terms are exactly the priors' code lengths of the encoder's codes
    assert torch.allclose(out["prior_top_bits_per_dim"], model.prior_top.nats(codes_top))
    assert torch.allclose(
        out["prior_bottom_bits_per_dim"], model.prior_bottom.nats(codes_bottom, codes_top)
    )


def test_priors_send_no_gradient_into_the_autoencoder() -> None:
    torch.manual_seed(0)
    model = VQVAE2(SMALL, MNIST).train()
    x = load_mnist().train[:8]
    out = model.training_step(x, torch.Generator().manual_seed(0))
    out.loss.backward()
    assert model.encoder_bottom[0].weight.grad.abs().sum() > 0
    assert model.prior_bottom.embed_top.weight.grad.abs().sum() > 0
    # a loss of only the prior terms reaches the priors and nothing else
    model.zero_grad()
    codes_top, codes_bottom = model.encode_codes(x.float() / 255)
    nats = model.prior_top.nats(codes_top) + model.prior_bottom.nats(codes_bottom, codes_top)
    nats.sum().backward()
    autoencoder = [model.encoder_bottom, model.encoder_top, model.decoder, model.top_to_bottom]
    assert all(p.grad is None for m in autoencoder for p in m.parameters())


def test_tiny_training_lowers_the_loss(tmp_path: Path) -> None:
    config = load_config(builtin_config_path("vqvae2-tiny"))
    torch.manual_seed(config.seed)
    test = load_mnist().test
    before = evaluate_model(ckpt.build_model(config), test, seed=0)
    result = train(config, tmp_path / "run", progress=False)
    after = result.test_metrics
    assert after["bits_per_dim"] < before["bits_per_dim"] - 1.0, (before, after)
    parts = ("recon_bits_per_dim", "prior_top_bits_per_dim", "prior_bottom_bits_per_dim")
    assert after["bits_per_dim"] == pytest.approx(sum(after[k] for k in parts))
    records = [r for r in ckpt.read_metrics(tmp_path / "run") if r["event"] == "train"]
    assert records[-1]["bits_per_dim"] < records[0]["bits_per_dim"]
    model_cfg = config.model_config()
    assert all(1.0 <= r["perplexity_top"] <= model_cfg.num_codes_top for r in records)
    assert all(1.0 <= r["perplexity_bottom"] <= model_cfg.num_codes_bottom for r in records)
    state = load_file(str(tmp_path / "run" / ckpt.CHECKPOINT))
    for name in ("quantizer_top", "quantizer_bottom"):  # both codebooks' EMA state is saved
        assert {f"{name}.codebook", f"{name}.ema_count", f"{name}.unused_steps"} <= set(state)


def test_builtin_configs_build_and_bad_sizes_are_refused() -> None:
    for name in ("vqvae2-tiny", "vqvae2-mnist"):
        model = ckpt.build_model(load_config(builtin_config_path(name)))
        assert isinstance(model, VQVAE2)
        assert (model.top_size, model.bottom_size) == ((7, 7), (14, 14))
    with pytest.raises(ValueError, match="divisible by 2\\*\\*2"):
        VQVAE2(SMALL, ImageShape(1, 30, 30))
