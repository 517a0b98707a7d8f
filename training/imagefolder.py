"""``imagefolder:PATH``: a user's own images, converted, resized and split reproducibly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from latentserve.training.dataset_types import SPLIT_SEED, ImageDataset
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def find_images(root: Path) -> list[Path]:
    """All image files under ``root`` (recursive), sorted so the split is reproducible."""
    if not root.exists():
        raise FileNotFoundError(f"image folder not found: {root}")
    if not root.is_dir():
        raise ValueError(f"image folder is not a directory: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {root}")
    return files


def read_image(path: Path, height: int, width: int, channels: int) -> np.ndarray:
    """One file as uint8 C×H×W: converted, resized (short side) and center-cropped."""
    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            img = ImageOps.fit(img, (width, height), method=Image.Resampling.BICUBIC)
            array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def load_imagefolder(root: Path, height: int, width: int, channels: int) -> ImageDataset:
    """A user's own images (see module docstring for formats, resizing and split)."""
    files = find_images(root)
    if len(files) < 2:
        raise ValueError(f"need at least 2 images under {root} (one for the test split)")
    images = np.stack([read_image(p, height, width, channels) for p in files])
    order = np.random.default_rng(SPLIT_SEED).permutation(len(files))
    n_test = max(1, len(files) // 10)
    return ImageDataset(
        name=f"imagefolder:{root}",
        train=torch.from_numpy(images[order[n_test:]]),
        test=torch.from_numpy(images[order[:n_test]]),
    )
