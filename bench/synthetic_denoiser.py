"""A synthetic diffusion model for the flat-cost benchmark: a real DDPM's manifest (its
image, conditioning, noise schedule and serving defaults) over a denoiser graph that costs
almost nothing to run.

The graph takes the template denoiser's inputs (``sample``, ``timestep``, ``class_label``)
and returns ``prediction = 0.5 × sample``: no weights, a few microseconds per row on a CPU.
Its images are meaningless; what it is for is leaving the call's time to the benchmark's
cost model (``flat_cost``) rather than to this machine's cores. The server serves it like
any exported model (checksum, manifest schema, diffusion pipeline, samplers).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from latentserve.manifest import GraphFile, GraphSpec, Manifest, sha256_file

#: ONNX element types of the manifest's dtype names.
DTYPES = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64}


def denoiser_graph(spec: GraphSpec) -> onnx.ModelProto:
    """``prediction = 0.5 × sample`` with every input of ``spec`` declared (ONNX Runtime
    refuses feeds the graph does not declare)."""
    (output,) = spec.outputs
    inputs = [
        helper.make_tensor_value_info(t.name, DTYPES[t.dtype], list(t.shape)) for t in spec.inputs
    ]
    half = helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])
    node = helper.make_node("Mul", ["sample", "half"], [output.name])
    out = helper.make_tensor_value_info(output.name, DTYPES[output.dtype], list(output.shape))
    graph = helper.make_graph([node], "synthetic_denoiser", inputs, [out], initializer=[half])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every supported ONNX Runtime
    onnx.checker.check_model(model)
    return model


def write_synthetic(template: Path, repository: Path, name: str = "ddpm-flat") -> Path:
    """Write ``repository/name/1``: ``template``'s manifest (a DDPM version folder) with the
    synthetic denoiser in place of its own. Returns the version folder."""
    manifest = Manifest.load(template)
    if "denoiser" not in manifest.graphs or manifest.conditioning is None:
        raise ValueError(f"{template}: needs a class-conditional denoiser model as template")
    version_dir = repository / name / "1"
    shutil.rmtree(version_dir, ignore_errors=True)
    version_dir.mkdir(parents=True)
    spec = manifest.graphs["denoiser"]
    path = version_dir / "denoiser.onnx"
    onnx.save(denoiser_graph(spec), path)
    graph = spec.model_copy(
        update={"files": {"onnx": GraphFile(path=path.name, sha256=sha256_file(path))}}
    )
    manifest.model_copy(
        update={
            "name": name,
            "version": "1",
            "description": f"Synthetic denoiser (0.5 x sample) over {manifest.name}'s manifest, "
            "for the flat-cost step-batching benchmark; its images mean nothing.",
            "capabilities": ["sample"],
            "graphs": {"denoiser": graph},
        }
    ).save(version_dir)
    Manifest.load(version_dir)  # what was written validates as the server will read it
    return version_dir
