"""Built-in datasets: the bundled MNIST split and a user's image folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from latentserve.training.data import load_dataset, load_mnist
from PIL import Image


def test_mnist_split_is_fixed_and_disjoint() -> None:
    data = load_dataset("mnist", 28, 28, 1)
    assert data.train.shape == (4500, 1, 28, 28) and data.test.shape == (500, 1, 28, 28)
    assert data.train.dtype == torch.uint8
    assert int(data.train.max()) == 255 and int(data.train.min()) == 0
    train_rows = {bytes(r) for r in data.train.flatten(1).numpy()}
    assert not any(bytes(r) in train_rows for r in data.test.flatten(1).numpy())
    load_mnist.cache_clear()
    again = load_mnist()
    assert torch.equal(again.test, data.test)


def test_mnist_labels_follow_the_split() -> None:
    data = load_mnist()
    assert data.train_labels.shape == (4500,) and data.test_labels.shape == (500,)
    assert data.train_labels.dtype == torch.int64
    assert torch.bincount(data.train_labels).tolist() == [450] * 10
    assert torch.bincount(data.test_labels).tolist() == [50] * 10


def test_mnist_refuses_other_sizes() -> None:
    with pytest.raises(ValueError, match="28x28x1"):
        load_dataset("mnist", 32, 32, 3)


def test_unknown_dataset() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        load_dataset("cifar", 32, 32, 3)


def _write_images(root: Path) -> None:
    rng = np.random.default_rng(0)
    (root / "nested" / "deeper").mkdir(parents=True)
    sizes = [(40, 30), (17, 64), (32, 32), (100, 50), (8, 8)]
    for i, (w, h) in enumerate(sizes):
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        folder = root if i % 2 else root / "nested" / "deeper"
        suffix = ".png" if i < 3 else ".jpg"
        Image.fromarray(pixels).save(folder / f"img{i}{suffix}")
    (root / "notes.txt").write_text("not an image")


@pytest.mark.parametrize("channels", [1, 3])
def test_imagefolder_resizes_and_splits(tmp_path: Path, channels: int) -> None:
    _write_images(tmp_path)
    data = load_dataset(f"imagefolder:{tmp_path}", 32, 24, channels)
    assert data.test.shape == (1, channels, 32, 24)
    assert data.train.shape == (4, channels, 32, 24)
    assert data.train.dtype == torch.uint8


def test_imagefolder_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_dataset(f"imagefolder:{missing}", 28, 28, 1)


def test_imagefolder_without_images(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ValueError, match=f"no images .* under {tmp_path}"):
        load_dataset(f"imagefolder:{tmp_path}", 28, 28, 1)


def test_imagefolder_unreadable_image_names_the_file(tmp_path: Path) -> None:
    _write_images(tmp_path)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    with pytest.raises(ValueError, match=f"cannot read image {broken}"):
        load_dataset(f"imagefolder:{tmp_path}", 28, 28, 1)
