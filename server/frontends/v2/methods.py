"""How a latentserve method reads as named tensors, for both V2 transports.

A request picks its method with the request parameter ``method`` (``sample``,
``text_to_image`` or ``reconstruct``); without it the model's default applies: ``sample``
where the model samples, else ``text_to_image``, else ``reconstruct``. A generating
method's inputs are its parameters, one single-element tensor each (``n`` INT32/INT64,
``seed`` INT64/UINT64, ``prompt`` BYTES, ``temperature`` FP32, ...), as the model's
metadata lists them; ``reconstruct`` takes ``images`` UINT8 ``[n, C, H, W]``. Outputs are
``images`` (UINT8 ``[n, C, H, W]``), ``seed`` (UINT64 ``[1]``: the seed used, generating
methods) and, only when asked for in ``outputs``, ``images_png`` (BYTES ``[n]``, PNGs).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from latentserve.server.codecs import encode_png
from latentserve.server.engine.service import GenerativeService, ModelDescription
from latentserve.server.errors import InvalidArgument, Unsupported, shown
from latentserve.server.frontends.v2.tensors import Tensor
from PIL import Image

GENERATING = ("sample", "text_to_image")
METHODS = (*GENERATING, "reconstruct")
PLATFORM = "latentserve"
# Parameters with no meaning over this protocol: previews are for event streams, and an
# img2img start image would be a tensor of its own.
_NOT_TENSORS = {"preview_every", "image"}
_JSON_TYPES = {"integer": "INT64", "number": "FP32", "string": "BYTES", "boolean": "BOOL"}
# Element types accepted for a parameter of each JSON type.
_ACCEPTED = {
    "integer": ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"),
    "number": ("FP32", "FP64", "INT32", "INT64"),
    "string": ("BYTES",),
    "boolean": ("BOOL",),
}
DEFAULT_OUTPUTS = ("images", "seed")
# Triton's model configuration names element types TYPE_<datatype>, BYTES as TYPE_STRING.
_CONFIG_TYPES = {"BYTES": "TYPE_STRING"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: list[int]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}


@dataclass(frozen=True)
class InferOutcome:
    model: str  # name@version
    outputs: list[Tensor]

    @property
    def name(self) -> str:
        return self.model.rpartition("@")[0]

    @property
    def version(self) -> str:
        return self.model.rpartition("@")[2]


def methods_of(model: ModelDescription) -> list[str]:
    return [m for m in METHODS if m in model.capabilities]


def default_method(model: ModelDescription) -> str:
    available = methods_of(model)
    if not available:
        raise Unsupported(f"model {model.name} offers none of {', '.join(METHODS)}")
    return available[0]


def choose_method(model: ModelDescription, method: object) -> str:
    """The method a request names (or the model's default); unknown ones refused by name."""
    if method is None:
        return default_method(model)
    if method not in METHODS:
        raise InvalidArgument(
            "method", f"unknown method {shown(method)!r}; known: {', '.join(METHODS)}"
        )
    if method not in model.capabilities:
        offered = ", ".join(methods_of(model)) or "none"
        raise Unsupported(f"model {model.name} cannot {method}: its methods are {offered}")
    return str(method)


def _parameter_types(model: ModelDescription, method: str) -> dict[str, str]:
    """Parameter name -> JSON type, of the model's ``method``."""
    schema = model.parameter_schemas.get(method, {})
    types = {}
    for name, prop in schema.get("properties", {}).items():
        options = prop.get("anyOf", [prop])
        kinds = [o["type"] for o in options if o.get("type") in _JSON_TYPES]
        if name not in _NOT_TENSORS and kinds and "format" not in options[0]:
            types[name] = kinds[0]
    return types


def input_specs(model: ModelDescription, method: str) -> list[TensorSpec]:
    if method == "reconstruct":
        return [TensorSpec("images", "UINT8", [-1, model.channels, model.height, model.width])]
    types = _parameter_types(model, method)
    return [TensorSpec(n, _JSON_TYPES[t], [1]) for n, t in types.items()]


def output_specs(model: ModelDescription, method: str) -> list[TensorSpec]:
    image = TensorSpec("images", "UINT8", [-1, model.channels, model.height, model.width])
    png = TensorSpec("images_png", "BYTES", [-1])
    return [image, png] + ([TensorSpec("seed", "UINT64", [1])] if method in GENERATING else [])


def metadata(model: ModelDescription) -> dict[str, Any]:
    """The protocol's model metadata: the tensors of the model's default method."""
    method = default_method(model)
    return {
        "name": model.name,
        "versions": model.versions,
        "platform": PLATFORM,
        "inputs": [s.as_dict() for s in input_specs(model, method)],
        "outputs": [s.as_dict() for s in output_specs(model, method)],
    }


def model_config(model: ModelDescription) -> dict[str, Any]:
    """The subset of Triton's model configuration its tools (perf_analyzer) read, for both
    transports: the default method's tensors, and no batch dimension of Triton's kind."""
    method = default_method(model)

    def tensors(specs: list[TensorSpec]) -> list[dict[str, Any]]:
        return [
            {
                "name": s.name,
                "data_type": _CONFIG_TYPES.get(s.datatype, f"TYPE_{s.datatype}"),
                "dims": s.shape,
            }
            for s in specs
        ]

    return {
        "name": model.name,
        "platform": PLATFORM,
        "max_batch_size": 0,
        "input": tensors(input_specs(model, method)),
        "output": tensors(output_specs(model, method)),
    }


def _scalar(tensor: Tensor, json_type: str) -> Any:
    if tensor.datatype not in _ACCEPTED[json_type]:
        accepted = ", ".join(_ACCEPTED[json_type])
        raise InvalidArgument(tensor.name, f"datatype must be one of {accepted}")
    if tensor.array.size != 1:
        raise InvalidArgument(
            tensor.name, f"takes one element (shape [1]), got shape {tensor.shape}"
        )
    value = tensor.array.reshape(-1)[0]
    if json_type == "string":
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument(tensor.name, "must be UTF-8 text") from None
    if json_type == "integer":
        return int(value)
    return bool(value) if json_type == "boolean" else float(value)


def _params(model: ModelDescription, method: str, inputs: Mapping[str, Tensor]) -> dict:
    types = _parameter_types(model, method)
    unknown = sorted(set(inputs) - set(types))
    if unknown:
        raise InvalidArgument(
            unknown[0],
            f"not an input of {model.name}'s {method} (its inputs: {', '.join(types)})",
        )
    return {name: _scalar(tensor, types[name]) for name, tensor in inputs.items()}


def _pngs(tensor: Tensor | None, model: ModelDescription) -> list[bytes]:
    """``images`` UINT8 [n, C, H, W] -> PNGs, for the engine's image methods."""
    if tensor is None:
        raise InvalidArgument("images", "reconstruct needs the input images")
    shape = [model.channels, model.height, model.width]
    if tensor.datatype != "UINT8" or tensor.array.ndim != 4 or tensor.shape[1:] != shape:
        raise InvalidArgument(
            "images",
            f"must be UINT8 [n, {', '.join(map(str, shape))}], got "
            f"{tensor.datatype} {tensor.shape}",
        )
    return [encode_png(np.ascontiguousarray(i.transpose(1, 2, 0))) for i in tensor.array]


def _pixels(pngs: list[bytes], channels: int) -> np.ndarray:
    """PNGs (lossless) -> UINT8 [n, C, H, W], the same pixels."""
    arrays = [np.asarray(Image.open(io.BytesIO(p)), dtype=np.uint8) for p in pngs]
    return np.stack([a.reshape(*a.shape[:2], channels).transpose(2, 0, 1) for a in arrays])


def check_outputs(model: ModelDescription, method: str, requested: list[str]) -> list[str]:
    names = [s.name for s in output_specs(model, method)]
    for name in requested:
        if name not in names:
            raise InvalidArgument(
                name, f"not an output of {model.name}'s {method} (its outputs: {', '.join(names)})"
            )
    return requested or [n for n in DEFAULT_OUTPUTS if n in names]


async def infer(
    service: GenerativeService,
    ref: str,
    method: object,
    inputs: Mapping[str, Tensor],
    requested: list[str],
    protocol: str,
) -> InferOutcome:
    """Run ``method`` on ``ref`` with named input tensors; the requested output tensors."""
    model = service.get_model(ref)
    chosen = choose_method(model, method)
    wanted = check_outputs(model, chosen, requested)
    seed = None
    pixels = None  # uint8 NHWC, when the engine was asked for pixels rather than PNGs
    if chosen == "reconstruct":
        extra = sorted(set(inputs) - {"images"})
        if extra:
            raise InvalidArgument(extra[0], "not an input of reconstruct (its input: images)")
        result = await service.reconstruct(ref, _pngs(inputs.get("images"), model), protocol)
        label, pngs = result.model, result.images
    else:
        params = _params(model, chosen, inputs)
        # Unless PNGs were asked for, none are made: the tensors are the pixels themselves.
        as_pixels = "images_png" not in wanted
        generated = await service.generate(ref, chosen, params, protocol, pixels=as_pixels)
        label, pngs, seed = generated.model, generated.images, generated.seed
        pixels = generated.pixels
    made = {
        "images": lambda: Tensor(
            "images",
            "UINT8",
            _pixels(pngs, model.channels)
            if pixels is None
            else np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)),
        ),
        "images_png": lambda: Tensor("images_png", "BYTES", _bytes_array(pngs)),
        "seed": lambda: Tensor("seed", "UINT64", np.array([seed], dtype=np.uint64)),
    }
    return InferOutcome(label, [made[name]() for name in wanted])


def _bytes_array(elements: list[bytes]) -> np.ndarray:
    array = np.empty(len(elements), dtype=object)
    array[:] = elements
    return array
