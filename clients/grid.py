"""Tile images into one contact sheet, the quickest way for a person to judge samples."""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image


def make_grid(
    images: Sequence[Image.Image],
    columns: int | None = None,
    padding: int = 2,
    background: int = 128,
) -> Image.Image:
    """Images in rows of ``columns`` (default: a near-square grid), separated by grey lines.

    The grey keeps tile borders visible for dark-background images such as digits.
    """
    if not images:
        raise ValueError("no images to put in a grid")
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    mode = "L" if all(image.mode == "L" for image in images) else "RGB"
    width = max(image.width for image in images)
    height = max(image.height for image in images)
    size = (columns * (width + padding) + padding, rows * (height + padding) + padding)
    sheet = Image.new(mode, size, color=background if mode == "L" else (background,) * 3)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        origin = (padding + column * (width + padding), padding + row * (height + padding))
        sheet.paste(image.convert(mode), origin)
    return sheet
