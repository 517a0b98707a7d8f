"""SDK pieces that need no server: error mapping, the PNG codec, the grid, URL dispatch."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
from latentserve.clients import (
    GrpcClient,
    InvalidArgumentError,
    ModelNotFoundError,
    OverloadedError,
    RestClient,
    ServerError,
    UnavailableError,
    UnsupportedError,
    connect,
)
from latentserve.clients.errors import from_grpc, from_http
from latentserve.clients.grid import make_grid
from latentserve.clients.images import from_png, to_png, to_pngs
from PIL import Image


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (404, "not_found", ModelNotFoundError),
        (400, "invalid_argument", InvalidArgumentError),
        (422, "unsupported", UnsupportedError),
        (503, "overloaded", OverloadedError),
        (503, "unavailable", UnavailableError),
        (500, "internal", ServerError),
        (429, "", OverloadedError),  # no known code: the HTTP status decides
    ],
)
def test_http_errors_map_to_typed_exceptions(status: int, code: str, expected: type) -> None:
    body = {"error": {"code": code, "message": "server says why", "field": "n"}}
    error = from_http(status, body)
    assert type(error) is expected
    assert error.message == "server says why"
    assert error.field == "n"
    assert "server says why" in str(error)


def test_overload_carries_the_retry_delay() -> None:
    body = {"error": {"code": "overloaded", "message": "queue full"}}
    assert from_http(429, body, retry_after="2").retry_after_s == 2.0
    assert from_http(429, body).retry_after_s is None


def test_http_error_without_json_body_keeps_the_text() -> None:
    error = from_http(502, "<html>bad gateway</html>")
    assert type(error) is ServerError
    assert "bad gateway" in error.message


class _FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple:
        return (("field", "images[0]"), ("retry-after", "3"))


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (grpc.StatusCode.NOT_FOUND, ModelNotFoundError),
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgumentError),
        (grpc.StatusCode.UNIMPLEMENTED, UnsupportedError),
        (grpc.StatusCode.FAILED_PRECONDITION, UnsupportedError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, OverloadedError),
        (grpc.StatusCode.UNAVAILABLE, UnavailableError),
        (grpc.StatusCode.INTERNAL, ServerError),
    ],
)
def test_grpc_errors_map_to_typed_exceptions(status: grpc.StatusCode, expected: type) -> None:
    error = from_grpc(_FakeRpcError(status, "details from the server"))
    assert type(error) is expected
    assert error.message == "details from the server"
    assert error.field == "images[0]"
    assert error.retry_after_s == 3.0


@pytest.mark.parametrize(
    ("status", "expected", "code"),
    [
        (400, UnsupportedError, "unsupported"),  # the server's 400 means unsupported
        (404, ModelNotFoundError, "not_found"),
        (413, InvalidArgumentError, "payload_too_large"),
        (422, InvalidArgumentError, "invalid_argument"),
        (502, ServerError, "internal"),
    ],
)
def test_without_a_code_the_documented_status_decides(
    status: int, expected: type, code: str
) -> None:
    error = from_http(status, "<html>a proxy's page</html>")
    assert (type(error), error.code) == (expected, code)


class _BareRpcError(_FakeRpcError):
    def trailing_metadata(self) -> tuple:
        return ()


@pytest.mark.parametrize(
    ("status", "expected", "code"),
    [
        (grpc.StatusCode.NOT_FOUND, ModelNotFoundError, "not_found"),  # as over REST
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgumentError, "invalid_argument"),
        (grpc.StatusCode.UNIMPLEMENTED, UnsupportedError, "unsupported"),
        # no retry-after: gRPC's message-size limit, not a full queue
        (grpc.StatusCode.RESOURCE_EXHAUSTED, InvalidArgumentError, "payload_too_large"),
        (grpc.StatusCode.INTERNAL, ServerError, "internal"),
    ],
)
def test_grpc_errors_carry_the_codes_of_rest_bodies(
    status: grpc.StatusCode, expected: type, code: str
) -> None:
    error = from_grpc(_BareRpcError(status, "details"))
    assert (type(error), error.code) == (expected, code)


def test_png_codec_accepts_arrays_images_bytes_and_paths(tmp_path) -> None:
    grey = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    png = to_png(grey)
    assert png.startswith(b"\x89PNG")
    np.testing.assert_array_equal(np.asarray(from_png(png)), grey)

    floats = np.full((4, 5, 1), 0.5, dtype=np.float32)
    assert np.asarray(from_png(to_png(floats))).tolist() == [[128] * 5] * 4

    jpeg = io.BytesIO()
    Image.new("RGB", (6, 3), (255, 0, 0)).save(jpeg, format="JPEG")
    assert from_png(to_png(jpeg.getvalue())).size == (6, 3)  # re-encoded as PNG

    path = tmp_path / "x.png"
    Image.fromarray(grey).save(path)
    assert to_png(path) == to_png(str(path))
    assert to_png(png) is png  # PNG bytes pass through untouched


def test_a_lone_image_is_refused_as_a_batch() -> None:
    with pytest.raises(TypeError, match="list of images"):
        to_pngs(np.zeros((28, 28), dtype=np.uint8))


def test_grid_is_near_square_with_padding() -> None:
    tiles = [Image.new("L", (28, 28), color=i * 10) for i in range(10)]
    grid = make_grid(tiles)  # 10 images -> 4 columns, 3 rows
    assert grid.size == (4 * 30 + 2, 3 * 30 + 2)
    assert grid.mode == "L"
    assert grid.getpixel((2 + 30 + 5, 2 + 5)) == 10  # second tile, first row
    assert grid.getpixel((0, 0)) == 128  # grey padding
    with pytest.raises(ValueError):
        make_grid([])


def test_connect_picks_the_transport_by_scheme() -> None:
    with connect("http://127.0.0.1:8000") as rest:
        assert isinstance(rest, RestClient)
    with connect("grpc://127.0.0.1:50051") as grpc_client:
        assert isinstance(grpc_client, GrpcClient)
        assert grpc_client.target == "127.0.0.1:50051"
    for bad in ("ftp://x", "127.0.0.1:50051", "grpc://host:1/path"):
        with pytest.raises(ValueError):
            connect(bad)


def test_the_cli_module_does_not_import_the_sdk() -> None:
    import subprocess
    import sys

    code = (
        "import sys, argparse; from latentserve.clients import cli;"
        "cli.register(argparse.ArgumentParser().add_subparsers());"
        "print(sorted(m for m in ('grpc', 'httpx', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
