"""mnist-captions: the mnist split with captions, held-out phrasings kept out of training."""

from __future__ import annotations

import pytest
import torch
from latentserve.training.captions import (
    HELDOUT_TEMPLATES,
    TRAIN_TEMPLATES,
    digit_caption,
    load_mnist_captions,
)
from latentserve.training.data import CaptionedSplit, load_dataset, load_mnist

ALL_DIGITS = range(10)


def test_images_split_and_labels_are_mnists() -> None:
    data = load_dataset("mnist-captions", 28, 28, 1)
    mnist = load_mnist()
    assert data.name == "mnist-captions"
    assert torch.equal(data.train, mnist.train) and torch.equal(data.test, mnist.test)
    assert torch.equal(data.train_labels, mnist.train_labels)
    assert torch.equal(data.train_split.images, data.train)
    assert len(data.train_split.captions) == 4500 and len(data.test_split.captions) == 500
    assert torch.equal(data.heldout.images, data.test)
    assert torch.equal(data.heldout.labels, data.test_labels)


def test_heldout_phrasings_never_caption_training_images() -> None:
    data = load_mnist_captions()
    heldout = {digit_caption(d, t) for d in ALL_DIGITS for t in HELDOUT_TEMPLATES}
    seen = {digit_caption(d, t) for d in ALL_DIGITS for t in TRAIN_TEMPLATES}
    assert not heldout & seen  # no phrasing pair collapses to the same text
    assert set(data.train_split.captions) == seen  # every digit in every training phrasing
    assert set(data.test_split.captions) <= seen
    assert set(data.heldout.captions) == heldout


def test_captions_name_their_images_digit() -> None:
    data = load_mnist_captions()
    for split in (data.train_split, data.test_split, data.heldout):
        for caption, digit in zip(split.captions, split.labels.tolist(), strict=True):
            assert caption in {digit_caption(digit, t) for t in TRAIN_TEMPLATES + HELDOUT_TEMPLATES}


def test_phrasings_are_balanced_and_fixed() -> None:
    data = load_mnist_captions()
    counts = [
        sum(c in {digit_caption(d, t) for d in ALL_DIGITS} for c in data.train_split.captions)
        for t in TRAIN_TEMPLATES
    ]
    assert counts == [750] * 6
    load_mnist_captions.cache_clear()
    assert load_mnist_captions().train_split.captions == data.train_split.captions


def test_digit_captions_read_well() -> None:
    assert digit_caption(7, "{a_n}") == "a 7" and digit_caption(8, "{a_n}") == "an 8"
    assert digit_caption(3, "the digit {w}") == "the digit three"


def test_a_split_needs_one_caption_per_image() -> None:
    with pytest.raises(ValueError, match="one caption"):
        CaptionedSplit(torch.zeros(2, 1, 4, 4), ("a",), torch.zeros(2))
