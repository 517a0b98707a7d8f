"""Checks on pictures the project writes (plots, documentation images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def assert_a_drawn_png(path: Path) -> None:
    """``path`` is a PNG with something drawn on it: not one flat colour."""
    assert path.is_file(), f"{path} was not written"
    with Image.open(path) as image:
        assert image.format == "PNG", image.format
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 1.0, f"{path} is blank"
