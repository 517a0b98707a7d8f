"""What every dataset loader returns: uint8 N×C×H×W images, labels where there are any,
and for captioned datasets a caption per image.

Images stay 8-bit: the models' likelihood is over the 256 pixel levels, so a float copy
here would only hide the discretization that makes bits/dim a real bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

#: Seed of every built-in dataset's split, fixed forever so bits/dim stay comparable
#: between runs.
SPLIT_SEED = 20240101


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
