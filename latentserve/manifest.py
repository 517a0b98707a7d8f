"""The model manifest: the only thing the server knows about a model.

Exporters write it, the server reads it. One typed, versioned schema keeps the two sides
honest: a field the server needs and the exporter forgot fails validation at load time,
not at the first request.

Graph I/O contract of the ``latent_decoder`` pipeline (AE, VAE, GAN generators). Images at
the graph boundary are float32 NCHW in ``image.value_range``; every graph has a dynamic
``batch`` axis; graphs contain no random ops (noise is an input):

- ``encoder``: ``image`` (batch, C, H, W) -> ``latent`` (batch, *latent.shape), the
  posterior mean (VAE) or code (AE); a VAE also outputs ``logvar`` of the same shape.
- ``decoder``: ``latent`` (batch, *latent.shape) -> ``image`` (batch, C, H, W).
- ``sampler``: ``noise`` (batch, *latent.shape) drawn from the prior by the server and
  ``temperature`` (batch,) -> ``image``. Present only when the family has a prior.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
MANIFEST_FILENAME = "manifest.json"

Capability = Literal["sample", "encode", "reconstruct", "log_prob"]
GraphRole = Literal["encoder", "decoder", "sampler"]
GraphFormat = Literal["onnx", "torchscript"]
PipelineKind = Literal["latent_decoder"]
DType = Literal["float32", "float16", "int64", "int32"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    """One graph input or output. A string dimension (e.g. ``"batch"``) is dynamic."""

    name: str
    dtype: DType
    shape: list[int | str]


class GraphFile(_Strict):
    path: str  # relative to the version folder
    sha256: str


class GraphSpec(_Strict):
    """One exported graph (same I/O in every format it was exported to)."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    files: dict[GraphFormat, GraphFile]


class ImageSpec(_Strict):
    """How images look at the graph boundary: NCHW float in ``value_range``."""

    height: int = Field(gt=0)
    width: int = Field(gt=0)
    channels: Literal[1, 3]
    value_range: tuple[float, float] = (0.0, 1.0)


class LatentSpec(_Strict):
    """Per-item latent shape (no batch dim) and the prior noise is drawn from."""

    shape: list[int]
    prior: Literal["standard_normal"] = "standard_normal"


class ServingDefaults(_Strict):
    """Batching defaults; the server's settings may override them per model."""

    max_batch_size: int = Field(default=32, gt=0)
    max_queue_delay_ms: float = Field(default=2.0, ge=0)
    max_queue_size: int = Field(default=1024, gt=0)
    max_n: int = Field(default=64, gt=0)


class Provenance(_Strict):
    config: dict
    dataset: str
    git_commit: str | None = None
    created_at: str
    latentserve_version: str
    metrics: dict[str, float] = Field(default_factory=dict)


class Manifest(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    version: str = Field(pattern=r"^[0-9]+$")
    family: str
    description: str = ""
    pipeline: PipelineKind
    capabilities: list[Capability]
    image: ImageSpec
    latent: LatentSpec
    graphs: dict[GraphRole, GraphSpec]
    serving: ServingDefaults = ServingDefaults()
    provenance: Provenance

    @classmethod
    def load(cls, version_dir: Path) -> Manifest:
        return cls.model_validate_json((version_dir / MANIFEST_FILENAME).read_text())

    def save(self, version_dir: Path) -> Path:
        path = version_dir / MANIFEST_FILENAME
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n")
        return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
