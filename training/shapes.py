"""``shapes``: 32×32 RGB scenes of one or two coloured shapes, with compositional captions.

A dataset whose captions are fully determined by what is drawn, so a text-to-image model
can be checked part by part (did it draw the right shape, colour, size, place?), and whose
held-out split asks for colour-shape pairs (``HELDOUT_COMBINATIONS``) that training never
shows: drawing a "green triangle" then needs composition, not recall.

Everything is rendered here with numpy from seeded draws (about a second for all splits),
so there is nothing to download and the data are the same on every machine.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from latentserve.training.dataset_types import SPLIT_SEED, CaptionedDataset, CaptionedSplit

SIZE = 32
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan", "white")
SIZES = ("small", "large")
POSITIONS = ("left", "right", "top", "bottom", "center")
RGB = np.array(
    [
        (230, 40, 40),
        (40, 200, 60),
        (50, 90, 240),
        (240, 220, 40),
        (220, 50, 220),
        (40, 210, 220),
        (235, 235, 235),
    ],
    dtype=np.uint8,
)
BACKGROUND = np.array((20, 20, 20), dtype=np.uint8)
RADIUS = (4, 7)  # half-extent in pixels, per size
CENTRES = ((16, 8), (16, 24), (8, 16), (24, 16), (16, 16))  # (row, column) per position
PLACE_WORDS = ("on the left", "on the right", "at the top", "at the bottom", "in the center")
# Two objects sit on opposite sides, so they never overlap.
PAIRED_POSITIONS = ((0, 1), (2, 3))
JITTER = 1  # each centre moves by up to this many pixels, for variety

#: (shape, colour) pairs never drawn in train or test; the held-out split has one or two.
HELDOUT_COMBINATIONS = (
    ("triangle", "green"),
    ("circle", "yellow"),
    ("square", "blue"),
    ("diamond", "magenta"),
    ("cross", "cyan"),
)
MAX_OBJECTS = 2
# Columns of a label row; -1 in every column marks "no object".
SHAPE, COLOUR, SIZE_, POSITION = range(4)
SPLIT_SIZES = {"train": 8000, "test": 1000, "heldout": 1000}
_STREAMS = {"train": 11, "test": 12, "heldout": 13, "scorer": 14}

_HELDOUT_PAIRS = {(SHAPES.index(s), COLOURS.index(c)) for s, c in HELDOUT_COMBINATIONS}
_ALL_PAIRS = [(s, c) for s in range(len(SHAPES)) for c in range(len(COLOURS))]
_SEEN_PAIRS = [pair for pair in _ALL_PAIRS if pair not in _HELDOUT_PAIRS]


@functools.cache
def _mask(shape: int, radius: int, row: int, col: int) -> np.ndarray:
    """Pixels covered by one shape of half-extent ``radius`` centred at (row, col)."""
    y, x = np.mgrid[:SIZE, :SIZE]
    dy, dx = (y - row).astype(np.float32), (x - col).astype(np.float32)
    r = float(radius)
    name = SHAPES[shape]
    if name == "circle":
        return dy**2 + dx**2 <= r**2
    if name == "square":
        return (np.abs(dy) <= 0.85 * r) & (np.abs(dx) <= 0.85 * r)
    if name == "diamond":
        return np.abs(dy) + np.abs(dx) <= r
    if name == "triangle":  # apex up, base 0.7 r below the centre
        return (dy >= -r) & (dy <= 0.7 * r) & (np.abs(dx) <= (dy + r) / 1.7)
    arm = r / 3  # cross
    return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))


def render(labels: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Images uint8 (N, 3, 32, 32) of label rows (N, MAX_OBJECTS, 4) with centre
    ``offsets`` (N, MAX_OBJECTS, 2) in pixels."""
    images = np.empty((len(labels), SIZE, SIZE, 3), dtype=np.uint8)
    images[:] = BACKGROUND
    for image, objects, moves in zip(images, labels, offsets, strict=True):
        for (shape, colour, size, position), (dr, dc) in zip(objects, moves, strict=True):
            if shape < 0:
                continue
            row, col = CENTRES[position]
            image[_mask(shape, RADIUS[size], row + dr, col + dc)] = RGB[colour]
    return images.transpose(0, 3, 1, 2).copy()


def describe(objects: np.ndarray, detail: int) -> str:
    """The caption of one image's label rows. ``detail`` 0..3 says what each object names
    besides its colour and shape: 0 size and place, 1 size, 2 place, 3 nothing."""
    phrases = []
    for shape, colour, size, position in objects:
        if shape < 0:
            continue
        words = [SIZES[size]] if detail in (0, 1) else []
        words += [COLOURS[colour], SHAPES[shape]]
        if detail in (0, 2):
            words.append(PLACE_WORDS[position])
        phrases.append("a " + " ".join(words))
    return " and ".join(phrases)


def _draw_labels(
    rng: np.random.Generator, n: int, first: list[tuple[int, int]], other: list[tuple[int, int]]
) -> np.ndarray:
    """Label rows of ``n`` scenes of one or two objects: the first object (before the order
    is shuffled) has a colour-shape pair from ``first``, the second one from ``other``."""
    labels = np.full((n, MAX_OBJECTS, 4), -1, dtype=np.int64)
    counts = rng.integers(1, MAX_OBJECTS + 1, size=n)
    for i, count in enumerate(counts):
        if count == 1:
            places = [int(rng.integers(len(POSITIONS)))]
        else:
            places = list(PAIRED_POSITIONS[rng.integers(len(PAIRED_POSITIONS))])
            rng.shuffle(places)
        for k, place in enumerate(places):
            pool = first if k == 0 else other
            shape, colour = pool[rng.integers(len(pool))]
            labels[i, k] = (shape, colour, rng.integers(len(SIZES)), place)
        if count == 2 and rng.integers(2):
            labels[i] = labels[i, ::-1]
    return labels


def make_split(split: str, n: int | None = None) -> CaptionedSplit:
    """One split of ``shapes`` from its own seed: ``train``, ``test``, ``heldout`` (the
    first object a held-out pair), or ``scorer`` (any pair; ``n`` scenes, default 8,000)
    for training the evaluation classifier, which must know every pair to check them."""
    rng = np.random.default_rng((SPLIT_SEED, _STREAMS[split]))
    n = n or SPLIT_SIZES.get(split, SPLIT_SIZES["train"])
    pools = {"heldout": (sorted(_HELDOUT_PAIRS), _SEEN_PAIRS), "scorer": (_ALL_PAIRS, _ALL_PAIRS)}
    labels = _draw_labels(rng, n, *pools.get(split, (_SEEN_PAIRS, _SEEN_PAIRS)))
    offsets = rng.integers(-JITTER, JITTER + 1, size=(n, MAX_OBJECTS, 2))
    details = rng.integers(4, size=n)
    captions = tuple(describe(objects, int(d)) for objects, d in zip(labels, details, strict=True))
    return CaptionedSplit(
        torch.from_numpy(render(labels, offsets)), captions, torch.from_numpy(labels)
    )


@functools.cache
def load_shapes() -> CaptionedDataset:
    """The three splits; no class labels (a scene is not one class), see ``labels``."""
    train, test, heldout = (make_split(s) for s in ("train", "test", "heldout"))
    return CaptionedDataset(
        name="shapes",
        train=train.images,
        test=test.images,
        train_split=train,
        test_split=test,
        heldout=heldout,
    )
