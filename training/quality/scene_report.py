"""Prompt accuracy and FID of generated ``shapes`` scenes, scored by the slot classifier.

A prompt is a caption of a real scene, so the objects it asks for are known exactly. An
object counts as drawn when the classifier finds its shape and colour together in one
slot, and a prompt counts when all its objects are drawn. Where the caption names places
("... on the left"), whether each object also sits at its place is scored apart. The same
rules applied to the real scenes behind the captions give the reference (the classifier's
own errors), and the FID comes with its real-vs-real floor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from latentserve.training import shapes
from latentserve.training.data import CaptionedSplit
from latentserve.training.quality.fid import fid
from latentserve.training.quality.report import FLOOR_SEED
from latentserve.training.quality.scenes import SceneClassifier, SlotPredictions

SPLITS = {
    "test": "in-distribution captions (unseen scenes, seen colour-shape pairs)",
    "heldout": "held-out colour-shape pairs (never in training)",
}
NOT_INCEPTION = (
    "shapes-FID: Fréchet distance on the penultimate features of the in-project shape + "
    "colour classifier, against the real test scenes. NOT Inception FID."
)


def names_place(caption: str) -> bool:
    """Whether a caption says where its objects are ("... on the left")."""
    return any(words in caption for words in shapes.PLACE_WORDS)


@dataclass(frozen=True)
class ObjectVerdicts:
    """Per requested object (N, MAX_OBJECTS): ``drawn`` (shape and colour right in some
    slot; True where the row holds no object, so ``drawn.all(1)`` judges each prompt),
    ``placed`` (drawn at its place) and ``named`` (its caption names the place)."""

    drawn: np.ndarray
    placed: np.ndarray
    named: np.ndarray
    present: np.ndarray

    @property
    def prompt_share(self) -> float:
        return float(self.drawn.all(axis=1).mean())

    @property
    def object_share(self) -> float:
        return float(self.drawn[self.present].mean())

    @property
    def place_share(self) -> float | None:
        """Of the objects whose caption names a place, the share drawn at that place."""
        named = self.present & self.named
        return float(self.placed[named].mean()) if named.any() else None


def judge_objects(
    predicted: SlotPredictions, labels: np.ndarray, captions: tuple[str, ...] | list[str]
) -> ObjectVerdicts:
    """Check each object a caption asks for against the classifier's slots."""
    labels = np.asarray(labels)
    present = labels[:, :, shapes.SHAPE] >= 0
    drawn, placed = ~present, np.zeros_like(present)
    named = np.array([[names_place(c)] * labels.shape[1] for c in captions], dtype=bool)
    for i, objects in enumerate(labels):
        for k, (shape, colour, _size, position) in enumerate(objects):
            if shape < 0:
                continue
            hits = (predicted.shapes[i] == shape) & (predicted.colours[i] == colour)
            drawn[i, k], placed[i, k] = bool(hits.any()), bool(hits[position])
    return ObjectVerdicts(drawn, placed, named, present)


@dataclass(frozen=True)
class SceneReport:
    """Scores of scenes generated for one split's captions, with their real references."""

    split: str
    n: int
    prompt_accuracy: float  # prompts with every object drawn (shape and colour right)
    object_accuracy: float  # requested objects drawn
    place_accuracy: float | None  # objects at the place their caption names
    real_prompt_accuracy: float  # the same rules on the real scenes of those captions
    real_place_accuracy: float | None
    fid: float
    reference_n: int  # real test scenes the FID is measured against
    floor_fid: float  # real training scenes vs the same test scenes
    floor_n: int
    classifier_test_accuracy: float
    note: str = field(default=NOT_INCEPTION)


def score_scenes(
    images: np.ndarray,
    prompts: CaptionedSplit,
    split: str,
    classifier: SceneClassifier,
    train: CaptionedSplit,
    test: CaptionedSplit,
) -> SceneReport:
    """Score generated ``images`` (uint8 N×3×32×32), one per caption of ``prompts``."""
    n = len(images)
    labels, captions = prompts.labels[:n].numpy(), prompts.captions[:n]
    drawn = judge_objects(classifier.predict(images), labels, captions)
    real = judge_objects(classifier.predict(prompts.images[:n]), labels, captions)
    test_features = classifier.features(test.images)
    floor_n = min(n, len(train.images))
    pick = np.random.default_rng(FLOOR_SEED).permutation(len(train.images))[:floor_n]
    return SceneReport(
        split=split,
        n=n,
        prompt_accuracy=drawn.prompt_share,
        object_accuracy=drawn.object_share,
        place_accuracy=drawn.place_share,
        real_prompt_accuracy=real.prompt_share,
        real_place_accuracy=real.place_share,
        fid=fid(classifier.features(images), test_features),
        reference_n=len(test.images),
        floor_fid=fid(classifier.features(train.images[pick]), test_features),
        floor_n=floor_n,
        classifier_test_accuracy=classifier.test_accuracy,
    )


def format_scene_report(report: SceneReport, source: str) -> str:
    """The report as aligned text lines for a terminal."""
    rows = [
        ("prompts fully drawn", f"{report.prompt_accuracy:.1%}"),
        ("objects drawn (shape + colour)", f"{report.object_accuracy:.1%}"),
        ("objects at their named place", _share(report.place_accuracy)),
        (
            "real scenes: prompts, places",
            f"{report.real_prompt_accuracy:.1%}, {_share(report.real_place_accuracy)}",
        ),
        (f"shapes-FID vs {report.reference_n} test scenes", f"{report.fid:.3f}"),
        (
            f"floor: {report.floor_n} train vs {report.reference_n} test scenes",
            f"{report.floor_fid:.3f}",
        ),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(
        [
            f"{report.n} scenes from {source} for {SPLITS[report.split]}, scored by the shapes "
            f"classifier (real test scenes fully right: {report.classifier_test_accuracy:.1%})",
            *(f"  {label + ':':<{width + 1}}  {value}" for label, value in rows),
            f"  ({report.note})",
        ]
    )


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


SCENE_TABLE_HEADER = (
    "| model | params | captions | n | prompts fully drawn | objects drawn | at named place "
    "| real: prompts, places | shapes-FID | floor (train vs test) |\n"
    "|---|---|---|---|---|---|---|---|---|---|\n"
)


def scene_markdown_row(report: SceneReport, model: str, params: str) -> str:
    """One table row; pair it with :data:`SCENE_TABLE_HEADER`."""
    return (
        f"| {model} | {params or '-'} | {report.split} | {report.n} "
        f"| {report.prompt_accuracy:.1%} | {report.object_accuracy:.1%} "
        f"| {_share(report.place_accuracy)} "
        f"| {report.real_prompt_accuracy:.1%}, {_share(report.real_place_accuracy)} "
        f"| {report.fid:.3f} "
        f"| {report.floor_fid:.3f} ({report.floor_n} vs {report.reference_n}) |\n"
    )
