"""PNG codec of the SDK: what callers hand in (PIL, arrays, bytes, paths) to wire bytes.

Images travel as PNG on both transports, so the SDK accepts whatever a caller naturally
holds and turns it into PNG bytes in this one place; responses come back as PIL images.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

ImageInput = Image.Image | np.ndarray | bytes | str | Path


def to_png(image: ImageInput) -> bytes:
    """Encode one input image as PNG bytes.

    ``bytes`` are taken as an already encoded image file and re-encoded as PNG only if
    they are not PNG already. Arrays are ``uint8`` HxW (grey) or HxWxC, or floats in [0, 1].
    """
    if isinstance(image, bytes):
        if image.startswith(b"\x89PNG\r\n\x1a\n"):
            return image
        image = Image.open(io.BytesIO(image))
    elif isinstance(image, str | Path):
        image = Image.open(image)
    elif isinstance(image, np.ndarray):
        image = _array_to_image(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"cannot encode {type(image).__name__} as an image")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def to_pngs(images: Iterable[ImageInput]) -> list[bytes]:
    """Encode a batch; a lone image (not a list) is refused to avoid iterating its pixels."""
    if isinstance(images, Image.Image | np.ndarray | bytes | str | Path):
        raise TypeError("pass a list of images, e.g. [image]")
    return [to_png(image) for image in images]


def from_png(data: bytes) -> Image.Image:
    """Decode PNG bytes into a fully loaded PIL image (no lazy file handle kept)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _array_to_image(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        array = (np.clip(array.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3):
        raise ValueError(f"expected an HxW or HxWxC array, got shape {array.shape}")
    return Image.fromarray(array)
