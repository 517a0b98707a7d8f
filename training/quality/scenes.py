"""The in-project shape + colour classifier that scores generated ``shapes`` scenes.

A scene holds one or two objects, each at one of five canonical places (left, right, top,
bottom, center; jittered by a pixel). So the classifier reads a scene as five *slots*, one
per place, and predicts for each the shape (or "empty") and the colour (or "empty"). That
lets a prompt be checked object by object: "a blue square and a yellow triangle" is right
when both objects are found with shape and colour right, at their named places when the
caption names places. It is trained on its own rendered ``scorer`` split, which has every
colour-shape pair — it has to recognise the held-out pairs the generative model never
saw — and none of the ``test`` or ``heldout`` scenes; cached like the digit classifier
(safetensors + JSON).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from latentserve.training import shapes
from latentserve.training.data import SPLIT_SEED
from latentserve.training.quality import DEFAULT_SCENE_CLASSIFIER_DIR
from latentserve.training.quality.classifier import (
    as_unit_images,
    fit,
    load_weights,
    read_info,
    run_batched,
    save_weights,
    seeded_init,
)
from torch import nn
from torch.nn import functional as F

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
IMAGE_SHAPE = (3, shapes.SIZE, shapes.SIZE)
SLOTS = len(shapes.POSITIONS)
EMPTY_SHAPE = len(shapes.SHAPES)  # the extra class of a slot without an object
EMPTY_COLOUR = len(shapes.COLOURS)


@dataclass(frozen=True)
class SceneClassifierConfig:
    """Architecture and schedule; the defaults train in about two minutes on one core."""

    widths: tuple[int, int, int] = (32, 64, 64)
    hidden: int = 128  # penultimate width: the feature dimension of the shapes FID
    epochs: int = 6
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    train_limit: int | None = None  # scenes to train on (default: the whole scorer split)
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SceneClassifierConfig:
        return cls(**{**values, "widths": tuple(values["widths"])})


class SceneCNN(nn.Module):
    """Three conv blocks (32 -> 4 pixels), a hidden layer (the features), slot heads."""

    def __init__(self, config: SceneClassifierConfig) -> None:
        super().__init__()
        c1, c2, c3 = config.widths
        self.convs = nn.ModuleList(
            [nn.Conv2d(3, c1, 3, padding=1), nn.Conv2d(c1, c2, 3, padding=1)]
            + [nn.Conv2d(c2, c3, 3, padding=1)]
        )
        self.hidden = nn.Linear(c3 * 4 * 4, config.hidden)
        self.shape_head = nn.Linear(config.hidden, SLOTS * (EMPTY_SHAPE + 1))
        self.colour_head = nn.Linear(config.hidden, SLOTS * (EMPTY_COLOUR + 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations of RGB images in [0, 1], (N, hidden)."""
        x = x - 0.5
        for conv in self.convs:
            x = F.max_pool2d(F.relu(conv(x)), 2)
        return F.relu(self.hidden(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shape logits (N, SLOTS, shapes + 1) and colour logits (N, SLOTS, colours + 1)."""
        h = self.features(x)
        return (
            self.shape_head(h).view(len(h), SLOTS, EMPTY_SHAPE + 1),
            self.colour_head(h).view(len(h), SLOTS, EMPTY_COLOUR + 1),
        )


def slot_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Label rows (N, MAX_OBJECTS, 4) as per-slot shape and colour classes, (N, SLOTS) each."""
    n = len(labels)
    shape_t = torch.full((n, SLOTS), EMPTY_SHAPE, dtype=torch.int64)
    colour_t = torch.full((n, SLOTS), EMPTY_COLOUR, dtype=torch.int64)
    for k in range(labels.shape[1]):
        present = labels[:, k, shapes.SHAPE] >= 0
        rows, places = present.nonzero().squeeze(1), labels[present, k, shapes.POSITION]
        shape_t[rows, places] = labels[present, k, shapes.SHAPE]
        colour_t[rows, places] = labels[present, k, shapes.COLOUR]
    return shape_t, colour_t


@dataclass(frozen=True)
class SlotPredictions:
    """Per-slot predicted shape and colour indices, (N, SLOTS); EMPTY_* marks no object."""

    shapes: np.ndarray
    colours: np.ndarray

    def exact(self, labels: np.ndarray) -> np.ndarray:
        """Per scene: every slot right, objects and empty places alike, (N,) bool."""
        shape_t, colour_t = (t.numpy() for t in slot_targets(torch.as_tensor(labels)))
        return ((self.shapes == shape_t) & (self.colours == colour_t)).all(axis=1)


@dataclass
class SceneClassifier:
    """A trained slot classifier and what it was trained on; scores images without grad."""

    model: SceneCNN
    config: SceneClassifierConfig
    info: dict[str, Any]

    @property
    def test_accuracy(self) -> float:
        """Share of real test scenes with every slot right."""
        return float(self.info["test_scene_accuracy"])

    def features(self, images: np.ndarray | torch.Tensor, batch_size: int = 500) -> np.ndarray:
        """Penultimate activations, float64 (N, hidden): the space the shapes FID uses."""
        x = as_unit_images(images, IMAGE_SHAPE)
        return run_batched(self.model, self.model.features, x, batch_size).astype(np.float64)

    def predict(self, images: np.ndarray | torch.Tensor, batch_size: int = 500) -> SlotPredictions:
        """The most likely shape and colour in each slot."""
        x = as_unit_images(images, IMAGE_SHAPE)
        flat = run_batched(
            self.model, lambda b: torch.cat([o.flatten(1) for o in self.model(b)], 1), x, batch_size
        )
        split = SLOTS * (EMPTY_SHAPE + 1)
        return SlotPredictions(
            flat[:, :split].reshape(len(x), SLOTS, -1).argmax(2),
            flat[:, split:].reshape(len(x), SLOTS, -1).argmax(2),
        )


def train_scene_classifier(
    config: SceneClassifierConfig = SceneClassifierConfig(),
) -> SceneClassifier:
    """Train on the shapes ``scorer`` split (deterministic given ``config.seed``)."""
    start = time.perf_counter()
    data = shapes.load_shapes()
    scorer = shapes.make_split("scorer", config.train_limit)
    images, labels = scorer.images, scorer.labels
    shape_t, colour_t = slot_targets(labels)

    def loss_of(net: nn.Module, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        shape_logits, colour_logits = net(x)
        return F.cross_entropy(shape_logits.transpose(1, 2), shape_t[idx]) + F.cross_entropy(
            colour_logits.transpose(1, 2), colour_t[idx]
        )

    model = seeded_init(config.seed, lambda: SceneCNN(config))
    fit(model, images, loss_of, config)
    classifier = SceneClassifier(model, config, {})
    test = data.test_split
    classifier.info = {
        "format_version": FORMAT_VERSION,
        "config": asdict(config),
        "data": {
            "dataset": "shapes",
            "trained_on": "scorer",
            "train_images": len(images),
            "evaluated_on": ["test", "heldout"],
            "test_images": len(test.images),
            "split_seed": SPLIT_SEED,
        },
        "test_scene_accuracy": _exact_share(classifier, test),
        "heldout_scene_accuracy": _exact_share(classifier, data.heldout),
        "train_seconds": round(time.perf_counter() - start, 1),
    }
    return classifier


def _exact_share(classifier: SceneClassifier, split: shapes.CaptionedSplit) -> float:
    return float(classifier.predict(split.images).exact(split.labels.numpy()).mean())


def load_or_train_scene_classifier(
    folder: Path = DEFAULT_SCENE_CLASSIFIER_DIR, config: SceneClassifierConfig | None = None
) -> SceneClassifier:
    """The cached classifier in ``folder``; trained and saved there when absent or when
    ``config`` differs from the cached one (a score is only meaningful with its scorer)."""
    info = read_info(folder, FORMAT_VERSION)
    if info is not None:
        cached = SceneClassifierConfig.from_dict(info["config"])
        if config is None or cached == config:
            return SceneClassifier(load_weights(SceneCNN(cached), folder), cached, info)
        log.info("cached scene classifier in %s has another config: retraining", folder)
    log.info("training the shapes classifier into %s", folder)
    classifier = train_scene_classifier(config or SceneClassifierConfig())
    save_weights(classifier.model, classifier.info, folder)
    return classifier
