"""Open Inference Protocol tensors ⇄ numpy arrays, for REST (JSON or binary) and gRPC alike.

The protocol names element types (``INT64``, ``BYTES``, ...); raw data is the flattened
row-major elements in little-endian order, and a ``BYTES`` element is its length as 4
little-endian bytes followed by its bytes. Every refusal is an ``InvalidArgument`` naming
the tensor.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from latentserve.server.errors import InvalidArgument, shown

DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    array: np.ndarray  # shaped; BYTES as an object array of ``bytes``

    @property
    def shape(self) -> list[int]:
        return list(self.array.shape)


def check_header(name: object, datatype: object, shape: object) -> tuple[str, str, list[int]]:
    """A tensor's name, element type and shape, refused by name when malformed."""
    if not isinstance(name, str) or not name:
        raise InvalidArgument("inputs", "every input needs a name")
    if datatype not in DTYPES:
        known = ", ".join(DTYPES)
        raise InvalidArgument(name, f"unknown datatype {shown(datatype)!r}; known: {known}")
    if not isinstance(shape, Sequence) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InvalidArgument(name, f"shape must be a list of sizes >= 0, got {shown(repr(shape))}")
    return name, str(datatype), [int(d) for d in shape]


def from_raw(name: str, datatype: str, shape: list[int], raw: bytes) -> Tensor:
    """A tensor from its raw bytes (REST binary data, gRPC ``raw_input_contents``)."""
    count = math.prod(shape)
    if datatype == "BYTES":
        elements = split_bytes(name, raw)
        if len(elements) != count:
            raise InvalidArgument(
                name, f"shape {shape} holds {count} elements, the data {len(elements)}"
            )
        return Tensor(name, datatype, _object_array(elements, shape))
    dtype = DTYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        raise InvalidArgument(
            name,
            f"shape {shape} of {datatype} takes {count * dtype.itemsize} bytes, got {len(raw)}",
        )
    return Tensor(name, datatype, np.frombuffer(raw, dtype=dtype).reshape(shape))


def from_values(name: str, datatype: str, shape: list[int], values: Sequence) -> Tensor:
    """A tensor from a flat (or nested) list of elements (REST JSON ``data``, gRPC
    ``contents``); JSON ``BYTES`` elements are strings, sent as UTF-8."""
    flat = list(_flatten(values))
    count = math.prod(shape)
    if len(flat) != count:
        raise InvalidArgument(name, f"shape {shape} holds {count} elements, the data {len(flat)}")
    if datatype == "BYTES":
        if not all(isinstance(v, str | bytes) for v in flat):
            raise InvalidArgument(name, "BYTES elements must be strings")
        elements = [v.encode() if isinstance(v, str) else v for v in flat]
        return Tensor(name, datatype, _object_array(elements, shape))
    dtype = DTYPES[datatype]
    wanted = bool if datatype == "BOOL" else float if dtype.kind == "f" else int
    for value in flat:
        if isinstance(value, bool) != (wanted is bool) or not isinstance(value, int | float):
            raise InvalidArgument(
                name, f"{datatype} elements must be numbers, got {shown(repr(value))}"
            )
        if wanted is int and not float(value).is_integer():
            raise InvalidArgument(
                name, f"{datatype} elements must be integers, got {shown(repr(value))}"
            )
    if wanted is int:
        info = np.iinfo(dtype)
        if flat and not info.min <= min(flat) <= max(flat) <= info.max:
            raise InvalidArgument(name, f"{datatype} elements must lie in [{info.min}, {info.max}]")
    return Tensor(name, datatype, np.asarray(flat, dtype=dtype).reshape(shape))


def to_raw(tensor: Tensor) -> bytes:
    if tensor.datatype == "BYTES":
        return b"".join(_LENGTH.pack(len(e)) + e for e in tensor.array.ravel())
    return np.ascontiguousarray(tensor.array, dtype=DTYPES[tensor.datatype]).tobytes()


def split_bytes(name: str, raw: bytes) -> list[bytes]:
    """The elements of a raw ``BYTES`` tensor."""
    elements, offset = [], 0
    while offset < len(raw):
        if offset + _LENGTH.size > len(raw):
            raise InvalidArgument(name, "BYTES data ends inside an element's length")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += _LENGTH.size
        if offset + length > len(raw):
            raise InvalidArgument(name, "BYTES data ends inside an element")
        elements.append(bytes(raw[offset : offset + length]))
        offset += length
    return elements


def _object_array(elements: list[bytes], shape: list[int]) -> np.ndarray:
    array = np.empty(len(elements), dtype=object)
    array[:] = elements
    return array.reshape(shape)


def _flatten(values: object):
    if isinstance(values, list | tuple):
        for value in values:
            yield from _flatten(value)
    else:
        yield values
