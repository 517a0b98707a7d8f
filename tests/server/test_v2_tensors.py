"""The Open Inference Protocol's tensor codecs and REST body framing, without a server: raw
and JSON data, BYTES framing, binary data after the JSON header, and refusals that name
the tensor."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from latentserve.server.errors import InvalidArgument
from latentserve.server.frontends.v2 import tensors, wire
from latentserve.server.frontends.v2.methods import InferOutcome
from latentserve.server.frontends.v2.tensors import Tensor


def test_bytes_tensors_round_trip_through_their_length_prefixed_raw_form() -> None:
    elements = np.array([b"a cat", b"", b"\x89PNG"], dtype=object)
    raw = tensors.to_raw(Tensor("prompt", "BYTES", elements))
    assert (
        raw
        == struct.pack("<I", 5)
        + b"a cat"
        + struct.pack("<I", 0)
        + struct.pack("<I", 4)
        + b"\x89PNG"
    )
    back = tensors.from_raw("prompt", "BYTES", [3], raw)
    assert back.array.tolist() == elements.tolist()
    with pytest.raises(InvalidArgument, match="prompt: BYTES data ends inside an element"):
        tensors.from_raw("prompt", "BYTES", [1], raw[:7])


def test_numeric_raw_data_must_fill_the_shape_exactly() -> None:
    raw = np.arange(6, dtype="<i8").tobytes()
    assert tensors.from_raw("n", "INT64", [2, 3], raw).array.tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(InvalidArgument, match=r"n: shape \[1\] of INT64 takes 8 bytes, got 48"):
        tensors.from_raw("n", "INT64", [1], raw)


@pytest.mark.parametrize(
    ("datatype", "values", "message"),
    [
        ("UINT8", [256], r"images: UINT8 elements must lie in \[0, 255\]"),
        ("INT64", [1.5], "images: INT64 elements must be integers"),
        ("INT64", [True], "images: INT64 elements must be numbers"),
        ("BYTES", [3], "images: BYTES elements must be strings"),
        ("INT32", [1, 2], r"images: shape \[1\] holds 1 elements, the data 2"),
    ],
)
def test_json_data_of_the_wrong_kind_is_refused_naming_the_tensor(datatype, values, message):
    with pytest.raises(InvalidArgument, match=message):
        tensors.from_values("images", datatype, [1], values)


def test_json_data_may_be_nested_and_bytes_are_utf8_text() -> None:
    assert tensors.from_values("x", "FP32", [2, 2], [[1, 2], [3, 4.5]]).array.dtype == np.float32
    assert tensors.from_values("p", "BYTES", [1], ["ü"]).array.tolist() == ["ü".encode()]


def binary_body(header: dict, *blobs: bytes) -> tuple[bytes, str]:
    text = json.dumps(header).encode()
    return text + b"".join(blobs), str(len(text))


def test_binary_inputs_follow_the_json_header_in_input_order() -> None:
    n, prompt = np.array([2], "<i4").tobytes(), struct.pack("<I", 3) + b"cat"
    body, length = binary_body(
        {
            "parameters": {"method": "text_to_image", "binary_data_output": True},
            "inputs": [
                {
                    "name": "n",
                    "datatype": "INT32",
                    "shape": [1],
                    "parameters": {"binary_data_size": 4},
                },
                {"name": "seed", "datatype": "INT64", "shape": [1], "data": [9]},
                {
                    "name": "prompt",
                    "datatype": "BYTES",
                    "shape": [1],
                    "parameters": {"binary_data_size": 7},
                },
            ],
        },
        n,
        prompt,
    )
    request = wire.parse_request(body, length)
    assert request.method == "text_to_image" and request.all_binary
    assert {k: v.array.tolist() for k, v in request.inputs.items()} == {
        "n": [2],
        "seed": [9],
        "prompt": [b"cat"],
    }
    with pytest.raises(InvalidArgument, match="body: 3 bytes of binary data belong to no input"):
        wire.parse_request(body + b"xyz", length)
    with pytest.raises(InvalidArgument, match="Inference-Header-Content-Length"):
        wire.parse_request(body, str(len(body) + 1))
    with pytest.raises(InvalidArgument, match="steps: not a request parameter"):
        wire.parse_request(json.dumps({"inputs": [], "parameters": {"steps": 3}}).encode(), None)


def test_pngs_always_go_back_as_binary_data_and_the_rest_as_json_unless_asked() -> None:
    request = wire.parse_request(json.dumps({"id": "r1", "inputs": []}).encode(), None)
    images = Tensor("images", "UINT8", np.zeros((1, 1, 2, 2), np.uint8))
    pngs = Tensor("images_png", "BYTES", np.array([b"\x89PNG"], dtype=object))
    body, length = wire.encode_response(request, InferOutcome("m@3", [images, pngs]))
    header = json.loads(body[:length])
    assert header["id"] == "r1" and header["model_version"] == "3"
    assert header["outputs"][0]["data"] == [0, 0, 0, 0]
    assert header["outputs"][1]["parameters"] == {"binary_data_size": 8}
    assert body[length:] == struct.pack("<I", 4) + b"\x89PNG"
