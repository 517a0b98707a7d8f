"""The REST body of an inference request and response: JSON, optionally followed by binary
tensor data (the protocol's binary tensor data extension).

With the ``Inference-Header-Content-Length`` header the body is that many bytes of JSON
and then the raw data of each input whose ``parameters.binary_data_size`` says so, in
input order. Outputs go back as binary data when the request asks (``binary_data`` on an
output, or ``binary_data_output`` for all) and always for ``images_png``, whose PNGs are
not JSON strings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from latentserve.server.errors import InvalidArgument
from latentserve.server.frontends.v2 import tensors
from latentserve.server.frontends.v2.methods import InferOutcome
from latentserve.server.frontends.v2.tensors import Tensor

HEADER_LENGTH = "Inference-Header-Content-Length"
REQUEST_PARAMETERS = ("method", "binary_data_output")
_ALWAYS_BINARY = {"images_png"}


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    method: object  # None: the model's default
    inputs: dict[str, Tensor]
    outputs: list[str]
    binary: set[str]  # outputs to send as binary data
    all_binary: bool  # binary_data_output: every output as binary data


def _object(value: object, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(field, "must be a JSON object")
    return value


def parse_object(body: bytes) -> dict[str, Any]:
    """A JSON object body."""
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidArgument("body", "not valid JSON") from None
    return _object(value, "body")


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """The request in ``body``; every malformed part refused by name."""
    length = len(body)
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise InvalidArgument(
                HEADER_LENGTH, f"must be a byte count within the body ({len(body)} bytes)"
            )
        length = int(header_length)
    request = parse_object(body[:length])
    parameters = _object(request.get("parameters"), "parameters")
    unknown = sorted(set(parameters) - set(REQUEST_PARAMETERS))
    if unknown:
        known = ", ".join(REQUEST_PARAMETERS)
        raise InvalidArgument(unknown[0], f"not a request parameter here (known: {known})")
    inputs = _inputs(request.get("inputs"), memoryview(body)[length:])
    all_binary = parameters.get("binary_data_output", False)
    if not isinstance(all_binary, bool):
        raise InvalidArgument("binary_data_output", "must be true or false")
    outputs, binary = _outputs(request.get("outputs"), all_binary)
    request_id = request.get("id")
    return InferRequest(
        None if request_id is None else str(request_id),
        parameters.get("method"),
        inputs,
        outputs,
        binary,
        all_binary,
    )


def _inputs(entries: object, binary: memoryview) -> dict[str, Tensor]:
    if not isinstance(entries, list):
        raise InvalidArgument("inputs", "must be a list of tensors")
    inputs: dict[str, Tensor] = {}
    offset = 0
    for entry in entries:
        entry = _object(entry, "inputs")
        name, datatype, shape = tensors.check_header(
            entry.get("name"), entry.get("datatype"), entry.get("shape")
        )
        if name in inputs:
            raise InvalidArgument(name, "sent twice")
        size = _object(entry.get("parameters"), name).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidArgument(name, "binary_data_size must be a byte count")
            if offset + size > len(binary):
                raise InvalidArgument(name, "binary_data_size runs past the end of the body")
            raw = bytes(binary[offset : offset + size])
            inputs[name] = tensors.from_raw(name, datatype, shape, raw)
            offset += size
        elif "data" in entry:
            inputs[name] = tensors.from_values(name, datatype, shape, _data(entry["data"]))
        else:
            raise InvalidArgument(name, "has neither data nor binary_data_size")
    if offset != len(binary):
        extra = len(binary) - offset
        raise InvalidArgument("body", f"{extra} bytes of binary data belong to no input")
    return inputs


def _data(data: object) -> list:
    return data if isinstance(data, list) else [data]


def _outputs(entries: object, all_binary: bool) -> tuple[list[str], set[str]]:
    if entries is None:
        return [], set()
    if not isinstance(entries, list):
        raise InvalidArgument("outputs", "must be a list of requested outputs")
    names, binary = [], set()
    for entry in entries:
        entry = _object(entry, "outputs")
        name = entry.get("name")
        if not isinstance(name, str):
            raise InvalidArgument("outputs", "every requested output needs a name")
        flag = _object(entry.get("parameters"), name).get("binary_data", all_binary)
        if not isinstance(flag, bool):
            raise InvalidArgument(name, "binary_data must be true or false")
        names.append(name)
        if flag:
            binary.add(name)
    return names, binary


def encode_response(request: InferRequest, outcome: InferOutcome) -> tuple[bytes, int | None]:
    """The response body, and the JSON part's length when binary data follows it."""
    entries, blobs = [], []
    for tensor in outcome.outputs:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": tensor.shape,
        }
        if request.all_binary or tensor.name in request.binary or tensor.name in _ALWAYS_BINARY:
            blob = tensors.to_raw(tensor)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = tensor.array.ravel().tolist()
        entries.append(entry)
    body: dict[str, Any] = {
        "model_name": outcome.name,
        "model_version": outcome.version,
        "outputs": entries,
    }
    if request.id is not None:
        body["id"] = request.id
    header = json.dumps(body, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
