"""Fashion-MNIST from Debian's dataset-fashion-mnist: the published files, split and labels,
its captions with held-out phrasings, and a classifier of its classes for eval-samples."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from latentserve.training.data import load_dataset
from latentserve.training.fashion import (
    CLASSES,
    DEBIAN_PACKAGE,
    FASHION_MNIST_DIR,
    FILES,
    HELDOUT_TEMPLATES,
    TRAIN_TEMPLATES,
    FashionMnistMissing,
    item_caption,
    load_fashion_mnist,
    load_fashion_mnist_captions,
    read_idx,
)
from latentserve.training.quality.classifier import ClassifierConfig, load_or_train_classifier
from latentserve.training.quality.report import score_images

ALL_CLASSES = range(10)


def _installed() -> bool:
    return all((FASHION_MNIST_DIR / name).is_file() for pair in FILES.values() for name in pair)


@pytest.fixture(scope="module")
def installed() -> None:
    """The package's files, which ``make test`` installs; missing, the data tests skip with
    the reason printed, except under CI, where a missing dataset is a broken setup."""
    if _installed():
        return
    reason = (
        f"Fashion-MNIST is not installed ({FASHION_MNIST_DIR}): "
        f"apt-get install {DEBIAN_PACKAGE} (make test does where apt can)"
    )
    if os.environ.get("CI"):
        pytest.fail(reason)
    print(reason)
    pytest.skip(reason)


def test_published_split_sizes_shapes_and_labels(installed: None) -> None:
    data = load_dataset("fashion-mnist", 28, 28, 1)
    assert data.name == "fashion-mnist"
    assert data.train.shape == (60_000, 1, 28, 28) and data.test.shape == (10_000, 1, 28, 28)
    assert data.train.dtype == torch.uint8 and data.test.dtype == torch.uint8
    assert data.train_labels is not None and data.test_labels is not None
    assert data.train_labels.dtype == torch.int64
    # the published split is balanced: 6,000 training and 1,000 test images per class
    assert data.train_labels.bincount().tolist() == [6000] * 10
    assert data.test_labels.bincount().tolist() == [1000] * 10
    # in file order, as published: both files start with an ankle boot
    assert int(data.train_labels[0]) == 9 and int(data.test_labels[0]) == 9
    assert int(data.train.max()) == 255 and int(data.train.min()) == 0
    # the published pixel statistics of the training split (mean 0.2860, std 0.3530)
    unit = data.train.float() / 255
    assert abs(unit.mean().item() - 0.2860) < 1e-3 and abs(unit.std().item() - 0.3530) < 1e-3


def test_a_config_of_another_size_is_refused(installed: None) -> None:
    with pytest.raises(ValueError, match="fashion-mnist.*28x28x1"):
        load_dataset("fashion-mnist", 32, 32, 3)


def test_captions_name_their_images_class_with_held_out_phrasings(installed: None) -> None:
    data = load_fashion_mnist_captions()
    assert torch.equal(data.train, load_fashion_mnist().train)
    heldout = {item_caption(c, t) for c in ALL_CLASSES for t in HELDOUT_TEMPLATES}
    seen = {item_caption(c, t) for c in ALL_CLASSES for t in TRAIN_TEMPLATES}
    assert not heldout & seen
    assert set(data.train_split.captions) == seen
    assert set(data.heldout.captions) == heldout
    for split in (data.train_split, data.test_split, data.heldout):
        assert len(split.captions) == len(split.images) == len(split.labels)
        for caption, label in zip(split.captions[:2000], split.labels[:2000].tolist(), strict=True):
            assert caption in {item_caption(label, t) for t in TRAIN_TEMPLATES + HELDOUT_TEMPLATES}


def test_held_out_captions_use_only_words_training_captions_use() -> None:
    seen_words = {
        w for c in ALL_CLASSES for t in TRAIN_TEMPLATES for w in item_caption(c, t).split()
    }
    for c in ALL_CLASSES:
        for t in HELDOUT_TEMPLATES:
            assert set(item_caption(c, t).split()) <= seen_words, item_caption(c, t)


def test_item_captions_read_well() -> None:
    assert len(CLASSES) == 10
    assert item_caption(1, "{a_item}") == "a pair of trousers"
    assert item_caption(9, "a photo of {a_item}") == "a photo of an ankle boot"
    assert item_caption(7, "{category}: {item}") == "footwear: sneaker"


def _write_idx(path: Path, header: bytes, body: bytes) -> None:
    with gzip.open(path, "wb") as f:
        f.write(header + body)


def test_idx_reader_reads_the_format_and_refuses_what_is_not(tmp_path: Path) -> None:
    good = tmp_path / "good.gz"
    _write_idx(
        good, b"\0\0\x08\x02" + (2).to_bytes(4, "big") + (3).to_bytes(4, "big"), bytes(range(6))
    )
    assert read_idx(good).tolist() == [[0, 1, 2], [3, 4, 5]]
    truncated = tmp_path / "truncated.gz"
    _write_idx(truncated, b"\0\0\x08\x01" + (10).to_bytes(4, "big"), bytes(3))
    with pytest.raises(ValueError, match="header says"):
        read_idx(truncated)
    floats = tmp_path / "floats.gz"
    _write_idx(floats, b"\0\0\x0d\x01" + (1).to_bytes(4, "big"), np.float32(1).tobytes())
    with pytest.raises(ValueError, match="unsigned bytes"):
        read_idx(floats)


def test_a_missing_install_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(FashionMnistMissing, match=DEBIAN_PACKAGE):
        load_fashion_mnist(tmp_path)


@pytest.fixture(scope="module")
def tiny_fashion_classifier(installed: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few seconds of training on 3,000 training images: enough to tell items apart."""
    config = ClassifierConfig(
        widths=(8, 16), hidden=32, epochs=2, train_limit=3000, lr=5e-3, dataset="fashion-mnist"
    )
    folder = tmp_path_factory.mktemp("fashion_classifier")
    load_or_train_classifier(folder, config)
    return folder


@pytest.mark.usefixtures("one_thread")
def test_the_classifier_code_serves_fashion_mnist(tiny_fashion_classifier: Path) -> None:
    classifier = load_or_train_classifier(tiny_fashion_classifier, dataset="fashion-mnist")
    assert classifier.info["data"]["dataset"] == "fashion-mnist"
    assert classifier.info["data"]["test_images"] == 10_000
    assert classifier.test_accuracy > 0.6  # chance is 0.1
    data = load_fashion_mnist()
    report = score_images(data.test[:500], classifier)
    assert report.dataset == "fashion-mnist" and report.reference_n == 10_000
    assert report.floor_n == 500
    assert sum(report.histogram) == 500 and min(report.histogram) > 0  # every class seen


def test_a_cached_classifier_of_another_dataset_is_refused(tiny_fashion_classifier: Path) -> None:
    with pytest.raises(ValueError, match="holds a fashion-mnist classifier, not a mnist one"):
        load_or_train_classifier(tiny_fashion_classifier)
