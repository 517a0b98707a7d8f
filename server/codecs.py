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
import struct
import warnings
import zlib
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
    """uint8 (H, W, C) -> PNG: one image of ``encode_pngs``."""
    return encode_pngs(pixels[None])[0]


def encode_pngs(pixels: np.ndarray) -> list[bytes]:
    """uint8 (N, H, W, C) -> one PNG each (8-bit grey, grey + alpha, RGB or RGBA).

    Written with zlib rather than Pillow: a 28x28 answer cost about 150 µs in Pillow's
    per-image plug-in machinery and a few µs here, and it is encoded on the event loop for
    every image served. The format is fixed by the PNG standard: signature, IHDR, one IDAT
    of zlib-compressed scanlines (filter type 0, "None"), IEND; low zlib effort, since
    encoding speed matters more than bytes here. Decoding (untrusted input) stays Pillow's.
    """
    n, height, width, channels = pixels.shape
    header = _chunk(b"IHDR", _IHDR.pack(width, height, 8, _COLOR_TYPES[channels], 0, 0, 0))
    # every scanline starts with its filter-type byte (0): one array for the whole batch
    rows = np.zeros((n, height, 1 + width * channels), np.uint8)
    rows[:, :, 1:] = pixels.reshape(n, height, width * channels)
    return [
        b"".join((PNG_SIGNATURE, header, _chunk(b"IDAT", zlib.compress(image, 1)), _IEND))
        for image in map(memoryview, rows)
    ]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return _LENGTH.pack(len(data)) + kind + data + _LENGTH.pack(zlib.crc32(data, zlib.crc32(kind)))


_LENGTH = struct.Struct(">I")
_IHDR = struct.Struct(">IIBBBBB")
_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # grey, grey + alpha, RGB, RGBA
_IEND = _chunk(b"IEND", b"")


def batch_to_pngs(batch: np.ndarray, spec: ImageSpec) -> list[bytes]:
    return encode_pngs(batch_to_pixels(batch, spec))
