"""VQ-VAE: PixelCNN causality, EMA codebook, dead-code restarts, perplexity, the honest
bound, training and resume."""

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
from latentserve.training.families.pixelcnn import GatedPixelCNN
from latentserve.training.families.vq import VectorQuantizer, perplexity
from latentserve.training.families.vqvae import VQVAE, VQVAEConfig
from latentserve.training.trainer import train
from safetensors.torch import load_file

MNIST = ImageShape(1, 28, 28)


def input_gradient(net: GatedPixelCNN, p: int, cond: torch.Tensor | None = None) -> torch.Tensor:
    """|d logits[p] / d embedded input| per position (raster order), for one item."""
    h, w = 5, 6
    x = torch.randn(1, 8, h, w, requires_grad=True)
    logits = net.logits_from_embedding(x, cond)
    logits.flatten(2)[0, :, p].sum().backward()
    return x.grad.abs().sum(1).flatten()


@pytest.mark.parametrize("attention", [False, True])
@pytest.mark.parametrize("kernel", [3, 5])
def test_pixelcnn_logits_depend_only_on_earlier_codes(attention: bool, kernel: int) -> None:
    torch.manual_seed(0)
    net = GatedPixelCNN(10, 5, 6, channels=8, layers=4, kernel=kernel, attention=attention)
    for p in range(30):
        grad = input_gradient(net, p)
        assert grad[p:].abs().max().item() == 0.0, p  # nothing at or after p
        i, j = divmod(p, 6)
        # no blind spot: the row above, right of p included, and the row's left part
        near = [(i - 1) * 6 + c for c in range(max(0, j - 1), min(6, j + 2)) if i > 0]
        near += [p - 1] if j > 0 else []
        assert all(grad[q] > 0 for q in near), (p, near)


def test_pixelcnn_causality_by_perturbing_codes() -> None:
    torch.manual_seed(0)
    net = GatedPixelCNN(10, 4, 4, channels=8, layers=3, attention=True).eval()
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, 10, (3, 4, 4), generator=g)
    base = net(codes).flatten(2)
    for p in range(16):
        changed = codes.clone().flatten(1)
        changed[:, p:] = torch.randint(0, 10, changed[:, p:].shape, generator=g)
        after = net(changed.view_as(codes)).flatten(2)
        assert torch.allclose(after[:, :, : p + 1], base[:, :, : p + 1], atol=1e-6), p


def test_pixelcnn_conditioning_is_added_everywhere() -> None:
    torch.manual_seed(0)
    net = GatedPixelCNN(10, 5, 6, channels=8, layers=3, cond_channels=4)
    cond = torch.randn(1, 4, 5, 6, requires_grad=True)
    grad = input_gradient(net, 0, cond)  # position 0 sees no codes...
    assert grad.abs().max().item() == 0.0
    assert cond.grad is not None and cond.grad.abs().sum().item() > 0  # ...but the condition
    with pytest.raises(ValueError, match="conditioning tensor"):
        net(torch.zeros(1, 5, 6, dtype=torch.int64))


def test_ema_moves_codes_towards_their_assigned_outputs() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 2, decay=0.9, dead_after=1000)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [-10.0, 0.0]]))
        vq.ema_sum.copy_(vq.codebook)
    z = torch.tensor([[1.0, 1.0], [2.0, 2.0], [9.0, 1.0]]).view(3, 2, 1, 1)  # codes 0, 0, 1
    before = vq.codebook.clone()
    rng = torch.get_rng_state()
    vq.train()
    out = vq(z, torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), rng)  # no global randomness
    assert out.codes.flatten().tolist() == [0, 0, 1]
    mean0, mean1 = torch.tensor([1.5, 1.5]), torch.tensor([9.0, 1.0])
    assert (vq.codebook[0] - mean0).norm() < (before[0] - mean0).norm()
    assert (vq.codebook[1] - mean1).norm() < (before[1] - mean1).norm()
    # the EMA of sums over the smoothed EMA of counts, in closed form for code 0
    counts = 0.9 * torch.ones(4) + 0.1 * torch.tensor([2.0, 1.0, 0.0, 0.0])
    n = counts.sum()
    smoothed0 = (counts[0] + vq.eps) / (n + 4 * vq.eps) * n
    expected0 = (0.9 * before[0] + 0.1 * torch.tensor([3.0, 3.0])) / smoothed0
    assert torch.allclose(vq.codebook[0], expected0, atol=1e-6)
    assert torch.allclose(vq.codebook[2:], before[2:], atol=1e-4)  # unused codes stay put
    vq.eval()
    frozen = vq.codebook.clone()
    vq(z)
    assert torch.equal(vq.codebook, frozen)  # evaluation never updates


def test_straight_through_and_commitment() -> None:
    vq = VectorQuantizer(3, 2, beta=0.25).eval()
    z = torch.randn(2, 2, 3, 3, requires_grad=True)
    out = vq(z)
    assert torch.allclose(out.quantized, vq.lookup(out.codes))
    expected = 0.25 * (z - vq.lookup(out.codes)).square().mean()
    assert out.commitment.item() == pytest.approx(expected.item())
    out.quantized.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))  # identity gradient through the lookup


def test_dead_codes_restart_at_batch_outputs_deterministically() -> None:
    def run(seed: int) -> tuple[VectorQuantizer, list[int]]:
        torch.manual_seed(0)
        vq = VectorQuantizer(8, 3, dead_after=2).train()
        with torch.no_grad():  # codes 1..7 sit far away: only code 0 is ever chosen
            vq.codebook[1:] += 100.0
            vq.ema_sum.copy_(vq.codebook)
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(5))
        restarted = [vq(z, g).restarted for _ in range(3)]
        return vq, restarted

    vq, restarted = run(seed=1)
    assert restarted == [0, 7, 0]  # dead after 2 unused steps, then counted afresh
    # restarted codes sit at the batch's outputs (then one more EMA step), not far away
    assert vq.codebook[1:].abs().max() < 10.0
    assert torch.all(vq.unused_steps <= 1)
    again, _ = run(seed=1)
    other, _ = run(seed=2)
    assert torch.equal(vq.codebook, again.codebook)
    assert not torch.equal(vq.codebook, other.codebook)


def test_restart_takes_exact_batch_rows() -> None:
    vq = VectorQuantizer(4, 2, dead_after=1).train()
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [50.0, 50.0], [60.0, 60.0], [70.0, 70.0]]))
        vq.ema_sum.copy_(vq.codebook)
    z = torch.randn(1, 2, 2, 3, generator=torch.Generator().manual_seed(0)) * 0.1
    vq(z, torch.Generator().manual_seed(0))
    rows = z.permute(0, 2, 3, 1).reshape(-1, 2)
    for code in vq.codebook[1:]:
        assert any(torch.equal(code, row) for row in rows)


def test_perplexity() -> None:
    assert perplexity(torch.tensor([5.0, 5.0, 5.0, 5.0])).item() == pytest.approx(4.0)
    assert perplexity(torch.tensor([0.0, 9.0, 0.0])).item() == pytest.approx(1.0)
    assert 1.0 < perplexity(torch.tensor([1.0, 3.0])).item() < 2.0


def test_evaluate_is_the_sum_of_decoder_and_prior_code_lengths() -> None:
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(num_codes=8, code_dim=4, hidden=8, prior_channels=8), MNIST).eval()
    x = load_mnist().test[:6]
    out = model.evaluate(x, torch.Generator())
    assert torch.allclose(
        out["bits_per_dim"], out["recon_bits_per_dim"] + out["prior_bits_per_dim"]
    )
    codes = model.encode_codes(x.float() / 255)
    assert codes.shape == (6, 7, 7) and codes.dtype == torch.int64
    # an untrained prior is near uniform: about log K nats per code
    per_code = out["prior_bits_per_dim"] / 49
    assert torch.all((per_code - math.log(8)).abs() < 0.5)


def test_tiny_training_lowers_the_loss_and_resumes_exactly(tmp_path: Path) -> None:
    config = load_config(builtin_config_path("vqvae-tiny"))
    torch.manual_seed(config.seed)
    test = load_mnist().test
    before = evaluate_model(ckpt.build_model(config), test, seed=0)
    result = train(config, tmp_path / "run", progress=False)
    after = result.test_metrics
    assert after["bits_per_dim"] < before["bits_per_dim"] - 1.0, (before, after)
    assert after["bits_per_dim"] == pytest.approx(
        after["recon_bits_per_dim"] + after["prior_bits_per_dim"]
    )
    records = [r for r in ckpt.read_metrics(tmp_path / "run") if r["event"] == "train"]
    assert records[-1]["bits_per_dim"] < records[0]["bits_per_dim"]
    assert all(1.0 <= r["perplexity"] <= 16.0 for r in records)
    assert sum(r["dead_codes_restarted"] for r in records) > 0  # tiny config restarts early

    short = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=8))
    train(short, tmp_path / "straight", progress=False)
    train(short, tmp_path / "resumed", stop_at=4, progress=False)
    train(short, tmp_path / "resumed", resume=True, progress=False)
    a = load_file(str(tmp_path / "straight" / ckpt.CHECKPOINT))
    b = load_file(str(tmp_path / "resumed" / ckpt.CHECKPOINT))
    assert "quantizer.unused_steps" in a and "quantizer.ema_count" in a
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_builtin_configs_build_and_bad_sizes_are_refused() -> None:
    for name in ("vqvae-tiny", "vqvae-mnist"):
        model = ckpt.build_model(load_config(builtin_config_path(name)))
        assert isinstance(model, VQVAE) and (model.code_height, model.code_width) == (7, 7)
    with pytest.raises(ValueError, match="divisible by 2\\*\\*3"):
        VQVAE(VQVAEConfig(stages=3), MNIST)
    with pytest.raises(ValueError, match="odd"):
        GatedPixelCNN(4, 3, 3, kernel=4)
