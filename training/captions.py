"""Captioned datasets for text-to-image, and ``mnist-captions``: MNIST digits in words.

A captioned dataset (``CaptionedDataset`` in ``latentserve.training.dataset_types``) is an
``ImageDataset``, so every family trains on it unchanged and ignores the text, plus one
caption and structured labels per image and a ``heldout`` split that training never sees.
The held-out split is what tells generalisation apart from memorisation: for
``mnist-captions`` it captions the test digits with phrasings no training caption uses;
for ``shapes`` (``latentserve.training.shapes``) it shows colour-shape combinations
absent from training.

Captions are fixed per image (drawn once with a fixed seed), so a run's text, like its
images, is a pure function of the index: resume and evaluation see the same captions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from latentserve.training.dataset_types import (
    SPLIT_SEED,
    CaptionedDataset,
    CaptionedSplit,
    ImageDataset,
)
from latentserve.training.mnist import load_mnist

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

#: Phrasings of a digit's caption: ``{n}`` the numeral, ``{w}`` the word, ``{a_n}`` the
#: numeral with its article ("a 7", "an 8").
TRAIN_TEMPLATES = (
    "a handwritten {n}",
    "the digit {w}",
    "number {n}, written by hand",
    "{a_n}",
    "{w}",
    "a drawing of the number {w}",
)
#: Used only by the held-out split: every word in them occurs in training captions,
#: only the combinations are new.
HELDOUT_TEMPLATES = ("the number {n}", "a handwritten {w}")

# Streams of the caption draws, distinct from the image split's permutation.
_TRAIN_CAPTIONS, _TEST_CAPTIONS = 1, 2

#: A class's caption in one phrasing: ``caption(label, template)``.
Caption = Callable[[int, str], str]


def digit_caption(digit: int, template: str) -> str:
    """The caption of ``digit`` in one phrasing (a ``TRAIN_TEMPLATES`` or
    ``HELDOUT_TEMPLATES`` entry)."""
    article = "an" if str(digit).startswith("8") else "a"
    return template.format(n=digit, w=DIGIT_WORDS[digit], a_n=f"{article} {digit}")


def _captions(
    labels: np.ndarray, caption: Caption, templates: tuple[str, ...], stream: int
) -> tuple[str, ...]:
    """One caption per label, phrasings balanced over the split in a seeded order."""
    choice = np.random.default_rng((SPLIT_SEED, stream)).permutation(len(labels)) % len(templates)
    return tuple(caption(int(y), templates[c]) for y, c in zip(labels, choice, strict=True))


def captioned_dataset(
    name: str,
    data: ImageDataset,
    caption: Caption,
    train_templates: tuple[str, ...],
    heldout_templates: tuple[str, ...],
) -> CaptionedDataset:
    """``data`` captioned from its class labels by ``caption(label, template)``: training
    and test images in ``train_templates`` phrasings, and a held-out split of the test
    images in ``heldout_templates`` (alternating), phrasings no training caption uses."""
    if data.train_labels is None or data.test_labels is None:
        raise ValueError(f"{data.name}: captions are drawn from class labels, and it has none")
    test_labels = data.test_labels.numpy()
    heldout = tuple(
        caption(int(y), heldout_templates[i % len(heldout_templates)])
        for i, y in enumerate(test_labels)
    )
    train_captions = _captions(data.train_labels.numpy(), caption, train_templates, _TRAIN_CAPTIONS)
    test_captions = _captions(test_labels, caption, train_templates, _TEST_CAPTIONS)
    return CaptionedDataset(
        name=name,
        train=data.train,
        test=data.test,
        train_labels=data.train_labels,
        test_labels=data.test_labels,
        train_split=CaptionedSplit(data.train, train_captions, data.train_labels),
        test_split=CaptionedSplit(data.test, test_captions, data.test_labels),
        heldout=CaptionedSplit(data.test, heldout, data.test_labels),
    )


@functools.cache
def load_mnist_captions() -> CaptionedDataset:
    """``mnist``'s images, split and labels, captioned; the held-out split is the test
    digits captioned with ``HELDOUT_TEMPLATES`` (alternating)."""
    return captioned_dataset(
        "mnist-captions", load_mnist(), digit_caption, TRAIN_TEMPLATES, HELDOUT_TEMPLATES
    )
