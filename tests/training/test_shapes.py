"""shapes: deterministic scenes whose pixels and captions match their labels, with
held-out colour-shape pairs only in the held-out split."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from latentserve.training import shapes
from latentserve.training.data import load_dataset
from latentserve.training.shapes import (
    CENTRES,
    COLOURS,
    HELDOUT_COMBINATIONS,
    RGB,
    SHAPES,
    describe,
    load_shapes,
    make_split,
)


@pytest.fixture(scope="module")
def data() -> shapes.CaptionedDataset:
    return load_dataset("shapes", 32, 32, 3)


def _pairs(labels: torch.Tensor) -> list[set[tuple[str, str]]]:
    return [
        {(SHAPES[s], COLOURS[c]) for s, c, _, _ in objects if s >= 0} for objects in labels.tolist()
    ]


def test_splits_sizes_and_types(data: shapes.CaptionedDataset) -> None:
    assert data.train.shape == (8000, 3, 32, 32) and data.train.dtype == torch.uint8
    assert data.test.shape == (1000, 3, 32, 32) and data.heldout.images.shape[0] == 1000
    assert data.train_labels is None  # a scene is no single class
    assert data.train_split.labels.shape == (8000, 2, 4)
    assert data.train_split.labels.dtype == torch.int64
    counts = (data.train_split.labels[:, :, 0] >= 0).sum(1)
    assert set(counts.tolist()) == {1, 2}


def test_rendering_is_deterministic_and_fast() -> None:
    start = time.perf_counter()
    first = make_split("train")
    assert time.perf_counter() - start < 2.0
    load_shapes.cache_clear()
    again = load_shapes().train_split
    assert torch.equal(first.images, again.images) and first.captions == again.captions
    assert torch.equal(first.labels, again.labels)


def test_heldout_pairs_only_in_the_heldout_split(data: shapes.CaptionedDataset) -> None:
    held = set(HELDOUT_COMBINATIONS)
    for split in (data.train_split, data.test_split):
        assert not any(pairs & held for pairs in _pairs(split.labels))
    heldout_pairs = _pairs(data.heldout.labels)
    assert all(pairs & held for pairs in heldout_pairs)
    assert set().union(*heldout_pairs) >= held  # every held-out pair is shown
    for shape, colour in held:  # ... and its words still occur in training captions
        assert any(shape in c for c in data.train_split.captions)
        assert any(colour in c for c in data.train_split.captions)
        assert not any(f"{colour} {shape}" in c for c in data.train_split.captions)
        assert any(f"{colour} {shape}" in c for c in data.heldout.captions)


def test_pixels_match_the_labels(data: shapes.CaptionedDataset) -> None:
    images = data.train[:500].numpy()
    for image, objects in zip(images, data.train_split.labels[:500].tolist(), strict=True):
        drawn = 0
        for shape, colour, _, position in objects:
            if shape < 0:
                continue
            row, col = CENTRES[position]  # centres move at most a pixel: check its 3x3
            patch = image[:, row - 1 : row + 2, col - 1 : col + 2].reshape(3, -1).T
            assert (patch == RGB[colour]).all(1).sum() >= 4
            drawn += (image.transpose(1, 2, 0) == RGB[colour]).all(-1).sum()
        background = (image.transpose(1, 2, 0) == shapes.BACKGROUND).all(-1).sum()
        assert background + drawn >= 32 * 32  # only background and the named colours
        assert 0 < background < 32 * 32


def test_large_shapes_cover_more_than_small(data: shapes.CaptionedDataset) -> None:
    labels = data.train_split.labels
    single = labels[:, 1, 0] < 0
    area = (data.train != torch.from_numpy(shapes.BACKGROUND)[:, None, None]).any(1).sum((1, 2))
    small = area[single & (labels[:, 0, 2] == 0)].float().mean()
    large = area[single & (labels[:, 0, 2] == 1)].float().mean()
    assert large > 2 * small


def test_captions_describe_the_labels(data: shapes.CaptionedDataset) -> None:
    for caption, objects in zip(data.train_split.captions, data.train_split.labels, strict=True):
        assert caption in {describe(objects.numpy(), d) for d in range(4)}
    row = np.array([[2, 1, 0, 0], [0, 3, 1, 1]])
    assert (
        describe(row, 0)
        == "a small green triangle on the left and a large yellow circle on the right"
    )
    assert describe(row, 3) == "a green triangle and a yellow circle"
    assert describe(np.array([[4, 6, 1, 4], [-1, -1, -1, -1]]), 1) == "a large white cross"
