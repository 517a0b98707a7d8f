"""Fréchet distance between Gaussians fitted to two feature sets (numpy only).

The matrix square root goes through symmetric eigendecompositions: with ``A = sqrt(S1)``,
``tr sqrt(S1 S2) = tr sqrt(A S2 A)`` and ``A S2 A`` is symmetric positive semi-definite,
so ``eigh``/``eigvalsh`` apply and tiny negative eigenvalues from rounding are clipped to
zero. This stays real and stable where a general ``sqrtm`` of the non-symmetric ``S1 S2``
drifts into complex values on near-singular covariances (few samples, many features).
"""

from __future__ import annotations

import numpy as np


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of ``features``, (N, D) with N >= 2, in float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need at least 2 feature rows (N, D), got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative rounding clipped)."""
    symmetric = (matrix + matrix.T) / 2
    values, vectors = np.linalg.eigh(symmetric)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(
    mean1: np.ndarray, cov1: np.ndarray, mean2: np.ndarray, cov2: np.ndarray
) -> float:
    """``|m1 - m2|^2 + tr(S1 + S2 - 2 sqrt(S1 S2))`` for two Gaussians."""
    root1 = psd_sqrt(cov1)
    middle = root1 @ cov2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    diff = mean1 - mean2
    distance = diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * trace_sqrt
    return float(max(distance, 0.0))


def fid(features1: np.ndarray, features2: np.ndarray) -> float:
    """Fréchet distance of the Gaussians fitted to two feature sets (N1, D) and (N2, D)."""
    return frechet_distance(*gaussian_stats(features1), *gaussian_stats(features2))
