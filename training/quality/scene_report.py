"""Prompt accuracy and FID of generated ``shapes`` scenes, scored by the slot classifier.

A prompt is a caption of a real scene, so the objects it asks for are known exactly. An
object counts as drawn when the classifier finds its shape and colour together — in the
slot of its place when the caption names the place, in any slot otherwise — and a prompt
counts when all its objects are drawn. The same rule applied to the real scenes behind
the captions gives the reference (the classifier's own errors), and the FID comes with
its real-vs-real floor.
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


def objects_drawn(
    predicted: SlotPredictions, labels: np.ndarray, captions: tuple[str, ...] | list[str]
) -> np.ndarray:
    """Per requested object, whether it was drawn: (N, MAX_OBJECTS) bool, True where the
    row holds no object (so ``.all(1)`` is the per-prompt verdict)."""
    labels = np.asarray(labels)
    drawn = np.ones(labels.shape[:2], dtype=bool)
    for i, (objects, caption) in enumerate(zip(labels, captions, strict=True)):
        at_place = names_place(caption)
        for k, (shape, colour, _size, position) in enumerate(objects):
            if shape < 0:
                continue
            hits = (predicted.shapes[i] == shape) & (predicted.colours[i] == colour)
            drawn[i, k] = bool(hits[position]) if at_place else bool(hits.any())
    return drawn


def object_share(drawn: np.ndarray, labels: np.ndarray) -> float:
    """Share of the requested objects that were drawn."""
    present = np.asarray(labels)[:, :, shapes.SHAPE] >= 0
    return float(drawn[present].mean())


@dataclass(frozen=True)
class SceneReport:
    """Scores of scenes generated for one split's captions, with their real references."""

    split: str
    n: int
    prompt_accuracy: float  # prompts with every object drawn (shape and colour right)
    object_accuracy: float  # requested objects drawn
    real_prompt_accuracy: float  # the same rule on the real scenes of those captions
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
    drawn = objects_drawn(classifier.predict(images), labels, captions)
    real = objects_drawn(classifier.predict(prompts.images[:n]), labels, captions)
    test_features = classifier.features(test.images)
    floor_n = min(n, len(train.images))
    pick = np.random.default_rng(FLOOR_SEED).permutation(len(train.images))[:floor_n]
    return SceneReport(
        split=split,
        n=n,
        prompt_accuracy=float(drawn.all(axis=1).mean()),
        object_accuracy=object_share(drawn, labels),
        real_prompt_accuracy=float(real.all(axis=1).mean()),
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
        ("objects drawn", f"{report.object_accuracy:.1%}"),
        ("same rule on the real scenes", f"{report.real_prompt_accuracy:.1%}"),
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


SCENE_TABLE_HEADER = (
    "| model | params | captions | n | prompts fully drawn | objects drawn | real scenes "
    "| shapes-FID | floor (train vs test) |\n|---|---|---|---|---|---|---|---|---|\n"
)


def scene_markdown_row(report: SceneReport, model: str, params: str) -> str:
    """One table row; pair it with :data:`SCENE_TABLE_HEADER`."""
    return (
        f"| {model} | {params or '-'} | {report.split} | {report.n} "
        f"| {report.prompt_accuracy:.1%} | {report.object_accuracy:.1%} "
        f"| {report.real_prompt_accuracy:.1%} | {report.fid:.3f} "
        f"| {report.floor_fid:.3f} ({report.floor_n} vs {report.reference_n}) |\n"
    )
