"""Wire images ⇄ graph arrays, with the validation every transport needs.

Clients send PNG (base64 over JSON, raw bytes over gRPC); graphs take float32 NCHW in the
manifest's value range. Every rejection is an ``InvalidArgument`` naming the field, and a
PNG's declared size is checked before its pixels are decompressed, so a small file that
expands to gigabytes (a decompression bomb) costs nothing.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import warnings
from collections.abc import Iterator

import numpy as np
from latentserve.server.errors import InvalidArgument
from PIL import Image

from latentserve.manifest import ImageSpec

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MODES = {1: "L", 3: "RGB"}
_ALPHA_MODES = ("LA", "RGBA", "PA", "La", "RGBa")


def decode_base64(text: str, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgument(field, f"not valid base64 ({exc})") from None


def encode_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_png(data: bytes, field: str, spec: ImageSpec, max_pixels: int) -> np.ndarray:
    """One PNG -> uint8 array (H, W, C) of exactly the model's size and channel count."""
    with _opened(data, field, spec, max_pixels) as image:
        mode = _MODES[spec.channels]
        if image.mode != mode:
            raise InvalidArgument(
                field,
                f"expected {spec.channels} channel(s) (PNG mode {mode}), got mode {image.mode}",
            )
        image.load()
        array = np.asarray(image, dtype=np.uint8)
    return array.reshape(spec.height, spec.width, spec.channels)


def decode_mask(data: bytes, field: str, spec: ImageSpec, max_pixels: int) -> np.ndarray:
    """An inpainting mask PNG of the model's size -> bool (H, W), True where it is kept.

    As in the OpenAI Images API, the mask's fully transparent pixels (alpha 0) mark what to
    repaint; so the PNG must carry transparency (an alpha channel or a transparent colour).
    """
    with _opened(data, field, spec, max_pixels) as image:
        if image.mode not in _ALPHA_MODES and "transparency" not in image.info:
            raise InvalidArgument(
                field,
                f"needs transparency (an alpha channel; got PNG mode {image.mode}): its "
                "transparent pixels mark what to repaint",
            )
        alpha = np.asarray(image.convert("RGBA"), dtype=np.uint8)[:, :, 3]
    return alpha > 0


@contextlib.contextmanager
def _opened(data: bytes, field: str, spec: ImageSpec, max_pixels: int) -> Iterator[Image.Image]:
    """A PNG opened (header read, size checked against the model's) before any pixel is
    decoded; decoding errors inside the block are reported against ``field``."""
    if not data.startswith(PNG_SIGNATURE):
        raise InvalidArgument(field, "not a PNG image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=["PNG"])
            width, height = image.size  # read from the header; no pixels decoded yet
            if width * height > max_pixels:
                raise InvalidArgument(
                    field, f"image of {width}x{height} exceeds the {max_pixels}-pixel limit"
                )
            if (height, width) != (spec.height, spec.width):
                raise InvalidArgument(
                    field,
                    f"expected {spec.width}x{spec.height} pixels, got {width}x{height}",
                )
            yield image
    except InvalidArgument:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidArgument(field, f"image refused as a decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError):
        raise InvalidArgument(field, "malformed PNG: the data cannot be decoded") from None


def pngs_to_batch(
    pngs: list[bytes], spec: ImageSpec, max_pixels: int, fields: list[str] | None = None
) -> np.ndarray:
    """PNGs -> float32 NCHW batch in ``spec.value_range``; errors name ``fields[i]``
    (default ``images[i]``)."""
    names = fields or [f"images[{i}]" for i in range(len(pngs))]
    pixels = np.stack(
        [decode_png(p, f, spec, max_pixels) for p, f in zip(pngs, names, strict=True)]
    )
    low, high = spec.value_range
    batch = pixels.transpose(0, 3, 1, 2).astype(np.float32)
    batch *= (high - low) / 255.0
    batch += low
    return batch


def batch_to_pixels(batch: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """Float NCHW in ``spec.value_range`` -> uint8 NHWC, clipped and rounded."""
    low, high = spec.value_range
    scaled = (np.asarray(batch, dtype=np.float32) - low) * (255.0 / (high - low))
    pixels = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return pixels.transpose(0, 2, 3, 1)


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 (H, W, C) -> PNG. Low zlib effort: encoding speed matters more than bytes here."""
    channels = pixels.shape[2]
    image = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def batch_to_pngs(batch: np.ndarray, spec: ImageSpec) -> list[bytes]:
    return [encode_png(p) for p in batch_to_pixels(batch, spec)]
