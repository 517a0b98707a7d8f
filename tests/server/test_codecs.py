"""PNG/base64 codecs: round trips, and every refusal names its field."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from helpers.fakes import header_only_png
from latentserve.server import codecs
from latentserve.server.errors import InvalidArgument
from PIL import Image

from latentserve.manifest import ImageSpec

GRAY = ImageSpec(height=28, width=28, channels=1)
RGB = ImageSpec(height=4, width=5, channels=3, value_range=(-1.0, 1.0))
LIMIT = 10_000


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_round_trip_preserves_pixels_in_both_value_ranges() -> None:
    rng = np.random.default_rng(0)
    for spec in (GRAY, RGB):
        pixels = rng.integers(0, 256, (2, spec.height, spec.width, spec.channels), np.uint8)
        pngs = [codecs.encode_png(p) for p in pixels]
        batch = codecs.pngs_to_batch(pngs, spec, LIMIT)
        assert batch.shape == (2, spec.channels, spec.height, spec.width)
        assert batch.dtype == np.float32
        low, high = spec.value_range
        assert low <= batch.min() and batch.max() <= high
        np.testing.assert_array_equal(codecs.batch_to_pixels(batch, spec), pixels)
        assert codecs.pngs_to_batch(codecs.batch_to_pngs(batch, spec), spec, LIMIT).tolist() == (
            batch.tolist()
        )


def test_out_of_range_outputs_are_clipped() -> None:
    batch = np.array([-5.0, 0.5, 7.0], np.float32).reshape(1, 1, 1, 3)
    spec = ImageSpec(height=1, width=3, channels=1)
    assert codecs.batch_to_pixels(batch, spec).reshape(-1).tolist() == [0, 128, 255]


def test_base64_round_trip_and_refusal() -> None:
    data = b"\x00\xffpng"
    assert codecs.decode_base64(codecs.encode_base64(data), "images[0]") == data
    with pytest.raises(InvalidArgument) as err:
        codecs.decode_base64("not base64!", "images[3]")
    assert err.value.field == "images[3]" and "base64" in err.value.message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"GIF89a....", "not a PNG"),
        (codecs.PNG_SIGNATURE + b"\x00\x00\x00\x0dIHDRgarbage", "malformed PNG"),
        (png(np.zeros((28, 28), np.uint8))[:50], "malformed PNG"),  # cut inside IDAT
        (png(np.zeros((27, 28), np.uint8)), "expected 28x28 pixels, got 28x27"),
        (png(np.zeros((28, 28, 3), np.uint8)), "expected 1 channel"),
    ],
)
def test_bad_images_are_refused_naming_the_field(data: bytes, expected: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        codecs.pngs_to_batch([png(np.zeros((28, 28), np.uint8)), data], GRAY, LIMIT)
    assert err.value.field == "images[1]"
    assert expected in err.value.message


def test_decompression_bombs_are_refused_before_decoding() -> None:
    # The files declare far more pixels than they hold: decoding would fail as a malformed
    # PNG, so the size message shows that the header alone decided.
    with pytest.raises(InvalidArgument, match="5000x5000 exceeds the 10000-pixel limit"):
        codecs.decode_png(header_only_png(5000, 5000), "images[0]", GRAY, LIMIT)
    # 40 gigapixels declared in a ~100-byte file: Pillow's own guard fires even earlier.
    with pytest.raises(InvalidArgument, match="decompression bomb") as err:
        codecs.decode_png(header_only_png(200_000, 200_000), "images[2]", GRAY, 10**12)
    assert err.value.field == "images[2]"


def test_png_bytes_are_small_and_fast_to_make() -> None:
    pixels = np.zeros((28, 28, 1), np.uint8)
    data = codecs.encode_png(pixels)
    assert data.startswith(codecs.PNG_SIGNATURE) and len(data) < 200
    assert base64.b64decode(codecs.encode_base64(data)) == data


def test_a_mask_keeps_what_is_not_transparent_in_any_png_transparency() -> None:
    keep = np.zeros((28, 28), dtype=bool)
    keep[:, :10] = True
    alpha = np.where(keep, 255, 0).astype(np.uint8)
    rgba = np.dstack([np.full((28, 28, 3), 99, np.uint8), alpha])
    palette = Image.fromarray(np.where(keep, 1, 0).astype(np.uint8), mode="P")
    palette.info["transparency"] = 0  # palette entry 0 is fully transparent
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", transparency=0)
    for data in (png(np.dstack([alpha, alpha])), png(rgba), buffer.getvalue()):
        np.testing.assert_array_equal(codecs.decode_mask(data, "mask", GRAY, LIMIT), keep)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (png(np.zeros((28, 28), np.uint8)), "needs transparency"),
        (png(np.zeros((14, 28, 4), np.uint8)), "expected 28x28 pixels"),
        (b"GIF89a....", "not a PNG"),
    ],
)
def test_bad_masks_are_refused_naming_the_field(data: bytes, expected: str) -> None:
    with pytest.raises(InvalidArgument, match=expected) as err:
        codecs.decode_mask(data, "mask", GRAY, LIMIT)
    assert err.value.field == "mask"


@pytest.mark.parametrize(("channels", "mode"), [(1, "L"), (2, "LA"), (3, "RGB"), (4, "RGBA")])
def test_encoded_pngs_decode_to_their_pixels_with_pillow(channels: int, mode: str) -> None:
    pixels = np.random.default_rng(channels).integers(0, 256, (3, 5, 7, channels), np.uint8)
    pngs = codecs.encode_pngs(pixels)
    assert len(pngs) == 3
    for data, expected in zip(pngs, pixels, strict=True):
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # checks every chunk's CRC and the zlib stream
            assert (image.format, image.mode, image.size) == ("PNG", mode, (7, 5))
            decoded = np.asarray(image)
        np.testing.assert_array_equal(decoded.reshape(expected.shape), expected)
