"""Pixel-level PixelCNN: the position step computes the full network's logits, and the
likelihood is exact (the probabilities of every 8-bit image sum to one)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from latentserve.training.config import builtin_config_path, load_config
from latentserve.training.data import load_mnist
from latentserve.training.evaluate import evaluate_model
from latentserve.training.families import ImageShape
from latentserve.training.families.pixelcnn import GatedPixelCNN
from latentserve.training.families.pixelcnn_pixels import PixelCNN, PixelCNNConfig
from latentserve.training.families.pixelcnn_step import PixelCNNPositionStep
from latentserve.training.trainer import train


@pytest.mark.parametrize(("kernel", "layers"), [(3, 1), (3, 4), (5, 3)])
def test_position_step_equals_the_full_network_at_every_position(kernel: int, layers: int) -> None:
    torch.manual_seed(0)
    h, w = 9, 7
    net = GatedPixelCNN(256, h, w, channels=8, layers=layers, kernel=kernel).eval()
    step = PixelCNNPositionStep(net, h, w)
    codes = torch.randint(0, 256, (3, h, w))
    with torch.no_grad():
        full = net(codes).flatten(2)  # (3, K, h*w)
        for p in range(h * w):
            at_p = step(codes, torch.full((3,), p))
            torch.testing.assert_close(at_p, full[:, :, p], rtol=0, atol=1e-5)
        # items at different positions in one call (how the server batches requests)
        mixed = torch.tensor([0, 30, h * w - 1])
        torch.testing.assert_close(
            step(codes, mixed), full[torch.arange(3), :, mixed], atol=1e-5, rtol=0
        )


def test_position_step_refuses_what_it_cannot_compute() -> None:
    with pytest.raises(ValueError, match="self-attention"):
        PixelCNNPositionStep(GatedPixelCNN(4, 5, 5, channels=4, attention=True), 5, 5)
    with pytest.raises(ValueError, match="unconditional"):
        PixelCNNPositionStep(GatedPixelCNN(4, 5, 5, channels=4, cond_channels=2), 5, 5)


def test_probabilities_of_every_8_bit_image_sum_to_one() -> None:
    torch.manual_seed(0)
    model = PixelCNN(PixelCNNConfig(channels=8, layers=2), ImageShape(1, 1, 2)).eval()
    levels = torch.arange(256)
    images = torch.cartesian_prod(levels, levels).view(-1, 1, 1, 2).to(torch.uint8)  # all 65,536
    with torch.no_grad():
        nats = model.evaluate(images, torch.Generator())["bits_per_dim"]
    total = torch.logsumexp(-nats.double(), 0).exp().item()
    assert total == pytest.approx(1.0, abs=1e-4)


def test_refuses_colour_images() -> None:
    with pytest.raises(ValueError, match="grayscale"):
        PixelCNN(PixelCNNConfig(), ImageShape(3, 28, 28))


def test_tiny_config_trains_below_uniform_bits_per_dim(tmp_path: Path) -> None:
    config = load_config(builtin_config_path("pixelcnn-tiny"))
    assert config.family == "pixelcnn"
    torch.manual_seed(0)
    untrained = PixelCNN(config.model_config(), config.image.shape())
    before = evaluate_model(untrained, load_mnist().test, seed=0)["bits_per_dim"]
    assert before == pytest.approx(8.0, abs=0.5)  # an untrained softmax is near uniform
    after = train(config, tmp_path, progress=False).test_metrics["bits_per_dim"]
    assert math.isfinite(after) and after < before - 1.0
