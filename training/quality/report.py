"""Sample-quality report of generated MNIST digits or Fashion-MNIST items, measured with
the in-project classifier of that dataset.

Every number comes with the reference that gives it meaning: classifier-FID next to the
real-vs-real floor at the same sample count, the confident share next to that of real
test digits, and the classifier's own test accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from latentserve.training.quality.classifier import DigitClassifier, labelled_dataset
from latentserve.training.quality.fid import fid

CONFIDENCE = 0.9
FLOOR_SEED = 0  # which training digits form the floor: fixed, so floors are comparable
NOT_INCEPTION = (
    "classifier-FID: Fréchet distance between Gaussians fitted to the penultimate features "
    "of the in-project classifier. It is NOT Inception FID and is not comparable "
    "with published FID numbers."
)


def confident_share(probabilities: np.ndarray, threshold: float = CONFIDENCE) -> float:
    """Share of images whose most likely class has probability >= ``threshold``."""
    return float((np.asarray(probabilities).max(axis=1) >= threshold).mean())


def class_histogram(probabilities: np.ndarray) -> list[int]:
    """Images per predicted class 0..9: a dropped mode shows as a near-empty bin."""
    predicted = np.asarray(probabilities).argmax(axis=1)
    return np.bincount(predicted, minlength=10).tolist()


def conditional_accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Share of images the classifier labels as the class they were requested for."""
    return float((np.asarray(probabilities).argmax(axis=1) == np.asarray(labels)).mean())


@dataclass(frozen=True)
class QualityReport:
    """Scores of one set of generated images, with their real-data references."""

    n: int
    fid: float
    reference_n: int  # test images the FID is measured against
    floor_fid: float  # training images vs the same test images
    floor_n: int  # training images in the floor: n where the training split allows
    confident_share: float
    real_confident_share: float  # of the real test digits, for reference
    histogram: list[int]
    classifier_test_accuracy: float
    conditional_accuracy: float | None = None
    threshold: float = CONFIDENCE
    note: str = field(default=NOT_INCEPTION)
    dataset: str = "mnist"  # whose classifier and test split


def score_images(
    images: np.ndarray | torch.Tensor,
    classifier: DigitClassifier,
    labels: np.ndarray | None = None,
    threshold: float = CONFIDENCE,
) -> QualityReport:
    """Score generated images against the test split of the classifier's dataset
    (``labels``: requested classes)."""
    data = labelled_dataset(classifier.config.dataset)
    probabilities = classifier.probabilities(images)
    test_features = classifier.features(data.test)
    floor_n = min(len(probabilities), len(data.train))
    pick = np.random.default_rng(FLOOR_SEED).permutation(len(data.train))[:floor_n]
    return QualityReport(
        n=len(probabilities),
        fid=fid(classifier.features(images), test_features),
        reference_n=len(data.test),
        floor_fid=fid(classifier.features(data.train[pick]), test_features),
        floor_n=floor_n,
        confident_share=confident_share(probabilities, threshold),
        real_confident_share=confident_share(classifier.probabilities(data.test), threshold),
        histogram=class_histogram(probabilities),
        classifier_test_accuracy=classifier.test_accuracy,
        conditional_accuracy=None
        if labels is None
        else conditional_accuracy(probabilities, labels),
        threshold=threshold,
        dataset=classifier.config.dataset,
    )


def format_report(report: QualityReport, source: str) -> str:
    """The report as aligned text lines for a terminal."""
    rows = [
        (f"classifier-FID vs {report.reference_n} test images", f"{report.fid:.3f}"),
        (
            f"floor: {report.floor_n} train vs {report.reference_n} test images",
            f"{report.floor_fid:.3f}",
        ),
        (
            f"confident (p >= {report.threshold})",
            f"{report.confident_share:.1%}  (real test images: {report.real_confident_share:.1%})",
        ),
        ("predicted classes 0..9", " ".join(str(count) for count in report.histogram)),
    ]
    if report.conditional_accuracy is not None:
        rows.append(("conditional accuracy", f"{report.conditional_accuracy:.1%}"))
    width = max(len(label) for label, _ in rows)
    return "\n".join(
        [
            f"{report.n} images from {source}, scored by the {report.dataset} classifier "
            f"(test accuracy {report.classifier_test_accuracy:.2%})",
            *(f"  {label + ':':<{width + 1}}  {value}" for label, value in rows),
            f"  ({report.note})",
        ]
    )


TABLE_HEADER = (
    f"| model | params | n | classifier-FID | floor (train vs test) | confident >= {CONFIDENCE} "
    "| real confident | predicted 0..9 | cond. acc. |\n"
    "|---|---|---|---|---|---|---|---|---|\n"
)


def markdown_row(report: QualityReport, model: str, params: str) -> str:
    """One table row; pair it with :data:`TABLE_HEADER` (its FID is classifier-FID)."""
    conditional = (
        "-" if report.conditional_accuracy is None else f"{report.conditional_accuracy:.1%}"
    )
    histogram = " ".join(str(c) for c in report.histogram)
    return (
        f"| {model} | {params or '-'} | {report.n} | {report.fid:.3f} "
        f"| {report.floor_fid:.3f} ({report.floor_n} vs {report.reference_n}) "
        f"| {report.confident_share:.1%} | {report.real_confident_share:.1%} "
        f"| {histogram} | {conditional} |\n"
    )
