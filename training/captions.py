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

import numpy as np
from latentserve.training.dataset_types import SPLIT_SEED, CaptionedDataset, CaptionedSplit
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


def digit_caption(digit: int, template: str) -> str:
    """The caption of ``digit`` in one phrasing (a ``TRAIN_TEMPLATES`` or
    ``HELDOUT_TEMPLATES`` entry)."""
    article = "an" if str(digit).startswith("8") else "a"
    return template.format(n=digit, w=DIGIT_WORDS[digit], a_n=f"{article} {digit}")


def _captions(digits: np.ndarray, templates: tuple[str, ...], stream: int) -> tuple[str, ...]:
    """One caption per digit, phrasings balanced over the split in a seeded order."""
    rng = np.random.default_rng((SPLIT_SEED, stream))
    choice = rng.permutation(len(digits)) % len(templates)
    return tuple(digit_caption(int(d), templates[c]) for d, c in zip(digits, choice, strict=True))


@functools.cache
def load_mnist_captions() -> CaptionedDataset:
    """``mnist``'s images, split and labels, captioned; the held-out split is the test
    digits captioned with ``HELDOUT_TEMPLATES`` (alternating)."""
    mnist = load_mnist()
    test_digits = mnist.test_labels.numpy()
    heldout_captions = tuple(
        digit_caption(int(d), HELDOUT_TEMPLATES[i % len(HELDOUT_TEMPLATES)])
        for i, d in enumerate(test_digits)
    )
    return CaptionedDataset(
        name="mnist-captions",
        train=mnist.train,
        test=mnist.test,
        train_labels=mnist.train_labels,
        test_labels=mnist.test_labels,
        train_split=CaptionedSplit(
            mnist.train,
            _captions(mnist.train_labels.numpy(), TRAIN_TEMPLATES, _TRAIN_CAPTIONS),
            mnist.train_labels,
        ),
        test_split=CaptionedSplit(
            mnist.test, _captions(test_digits, TRAIN_TEMPLATES, _TEST_CAPTIONS), mnist.test_labels
        ),
        heldout=CaptionedSplit(mnist.test, heldout_captions, mnist.test_labels),
    )
