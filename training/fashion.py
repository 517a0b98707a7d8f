"""Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017): 70,000 28×28 grayscale photos of
clothing, shoes and bags in 10 classes, and its captioned form for text-to-image.

The files come from Debian's ``dataset-fashion-mnist`` package (``make test`` and the
training setup install it), as published: four gzipped IDX files under
``/usr/share/datasets/fashion-mnist``. The splits are the published ones, 60,000
training and 10,000 test images, in file order, so figures compare with the literature.

Dataset specs (the ``dataset`` key of a training config):

- ``fashion-mnist``: the images and their class labels 0..9 (``CLASSES``).
- ``fashion-mnist-captions``: the same, each image captioned from its class's name and an
  attribute the class implies ("a pair of trousers with two long legs", "footwear: a
  sneaker"). As for ``mnist-captions``, captions are drawn once with a fixed seed, and the
  held-out split captions the test images with phrasings no training caption uses, built
  only from words that training captions contain.
"""

from __future__ import annotations

import functools
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from latentserve.training.captions import captioned_dataset
from latentserve.training.dataset_types import CaptionedDataset, ImageDataset

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SPLIT_SIZES = {"train": 60_000, "test": 10_000}
# IDX type codes (the third magic byte) this reader accepts: unsigned bytes only.
_IDX_UBYTE = 0x08


@dataclass(frozen=True)
class FashionClass:
    """What a class's captions say: the item (bare and with its article), an attribute
    every item of the class has, and the kind of thing it is."""

    item: str
    a_item: str
    attribute: str
    category: str


#: The 10 classes in label order (the dataset's own names: T-shirt/top, Trouser, Pullover,
#: Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot).
CLASSES = (
    FashionClass("t-shirt", "a t-shirt", "with short sleeves", "clothing"),
    FashionClass("trousers", "a pair of trousers", "with two long legs", "clothing"),
    FashionClass("pullover", "a pullover", "with long sleeves", "clothing"),
    FashionClass("dress", "a dress", "in one piece", "clothing"),
    FashionClass("coat", "a coat", "with a front opening", "clothing"),
    FashionClass("sandal", "a sandal", "with open straps", "footwear"),
    FashionClass("shirt", "a shirt", "with a collar", "clothing"),
    FashionClass("sneaker", "a sneaker", "with a flat sole", "footwear"),
    FashionClass("bag", "a bag", "with a handle", "accessory"),
    FashionClass("ankle boot", "an ankle boot", "that covers the ankle", "footwear"),
)

#: Phrasings of an item's caption: ``{item}``, ``{a_item}``, ``{attribute}``, ``{category}``.
TRAIN_TEMPLATES = (
    "{a_item}",
    "{item}",
    "a photo of {a_item}",
    "{a_item} {attribute}",
    "a product photo of {a_item}",
    "{category}: {item}",
)
#: Used only by the held-out split: every word occurs in training captions, only the
#: combinations are new.
HELDOUT_TEMPLATES = ("a photo of {a_item} {attribute}", "{category}: {a_item} {attribute}")


class FashionMnistMissing(FileNotFoundError):
    """The Debian package that carries the Fashion-MNIST files is not installed."""


def read_idx(path: Path) -> np.ndarray:
    """A gzipped IDX file of unsigned bytes (LeCun's MNIST format) as a uint8 array.

    Header: two zero bytes, the type code, the number of dimensions, then each dimension
    as a big-endian uint32; the data follows in C order.
    """
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != _IDX_UBYTE:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw[4:header], dtype=">u4"))
    data = np.frombuffer(raw[header:], dtype=np.uint8)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape}, found {data.size} values")
    return data.reshape(shape)


def _read_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    image_file, label_file = FILES[split]
    paths = [folder / image_file, folder / label_file]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FashionMnistMissing(
            f"Fashion-MNIST files missing ({', '.join(missing)}): install Debian's "
            f"{DEBIAN_PACKAGE} package (apt-get install {DEBIAN_PACKAGE}, or make test)"
        )
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.shape != (SPLIT_SIZES[split], 28, 28) or labels.shape != (SPLIT_SIZES[split],):
        raise ValueError(f"{folder}: {split} split has shape {images.shape} / {labels.shape}")
    if labels.max() >= len(CLASSES):
        raise ValueError(f"{paths[1]}: labels must lie in 0..{len(CLASSES) - 1}")
    return images[:, None], labels.astype(np.int64)


@functools.cache
def load_fashion_mnist(folder: Path = FASHION_MNIST_DIR) -> ImageDataset:
    """The published 60,000 / 10,000 split with class labels (parsed once)."""
    train, train_labels = _read_split(folder, "train")
    test, test_labels = _read_split(folder, "test")
    return ImageDataset(
        name="fashion-mnist",
        train=torch.from_numpy(train.copy()),
        test=torch.from_numpy(test.copy()),
        train_labels=torch.from_numpy(train_labels),
        test_labels=torch.from_numpy(test_labels),
    )


def item_caption(label: int, template: str) -> str:
    """The caption of class ``label`` in one phrasing (a ``TRAIN_TEMPLATES`` or
    ``HELDOUT_TEMPLATES`` entry, or a user's template with the same fields)."""
    c = CLASSES[label]
    return template.format(item=c.item, a_item=c.a_item, attribute=c.attribute, category=c.category)


@functools.cache
def load_fashion_mnist_captions(folder: Path = FASHION_MNIST_DIR) -> CaptionedDataset:
    """``fashion-mnist`` captioned; the held-out split is the test images captioned with
    ``HELDOUT_TEMPLATES`` (alternating)."""
    return captioned_dataset(
        "fashion-mnist-captions",
        load_fashion_mnist(folder),
        item_caption,
        TRAIN_TEMPLATES,
        HELDOUT_TEMPLATES,
    )
