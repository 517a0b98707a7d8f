"""What an export recipe is made of: the graphs to export and the manifest parts.

Every family's recipe (``latentserve.exporters.recipes``) builds an ``ExportPlan`` from a
trained model with these types and the tensor specs shared between families below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from latentserve.exporters.graphs import DecoderGraph
from latentserve.training.families import LatentModel
from torch import nn

from latentserve.manifest import (
    Capability,
    ClassConditioning,
    CodeMap,
    GeneratorSpec,
    GraphRole,
    LatentSpec,
    LikelihoodKind,
    NoiseScheduleSpec,
    PipelineKind,
    TensorSpec,
    TextConditioning,
)

# Sizes given to named dynamic dimensions other than "batch" in example inputs.
EXAMPLE_DIMS = {"samples": 3}

#: How far an exported graph may drift from eager PyTorch (absolute plus relative).
PARITY_TOLERANCE = 1e-4
#: For a graph whose output is an image in [0, 1] that serving rounds to 8 bits: a quarter
#: of one level. A flow's sampler needs it: it runs every coupling and 1x1 convolution in
#: reverse, and float32 rounding that differs between runtimes grows on the way.
IMAGE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class GraphPlan:
    """One graph to export: the module and its contract-named inputs and outputs.

    ``int_range`` gives, per input that carries integers (every int64 input, and float
    inputs such as diffusion timesteps), the range ``[low, high)`` of valid values (a code
    map's codebook, the training timesteps), so example inputs are valid.
    """

    role: GraphRole
    module: nn.Module
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    int_range: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: how far the exported files may drift from eager PyTorch (absolute plus relative)
    tolerance: float = PARITY_TOLERANCE

    def example_inputs(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """Random inputs of the declared shapes (8-bit images in [0, 1], temperatures and
        truncations near 1, integers drawn from ``int_range``)."""
        tensors = []
        for spec in self.inputs:
            shape = [
                (batch if d == "batch" else EXAMPLE_DIMS[d]) if isinstance(d, str) else d
                for d in spec.shape
            ]
            if spec.dtype == "int64" or spec.name in self.int_range:
                low, high = self.int_range[spec.name]
                values = torch.randint(low, high, shape, generator=generator)
                tensors.append(values if spec.dtype == "int64" else values.to(torch.float32))
            elif spec.name == "image":  # on the 8-bit grid, as the server decodes PNGs
                tensors.append(torch.randint(0, 256, shape, generator=generator) / 255.0)
            elif spec.name in ("temperature", "truncation"):
                tensors.append(0.5 + torch.rand(shape, generator=generator))
            else:
                tensors.append(torch.randn(shape, generator=generator))
        return tuple(tensors)


@dataclass(frozen=True)
class ExportPlan:
    """Everything a family's export produces: graphs, files copied as is, manifest parts.

    ``assets`` maps an asset name to the file copied into the version folder (a tokenizer);
    the manifest records it with its sha256, which the server verifies at load.
    """

    graphs: list[GraphPlan]
    latent: LatentSpec
    pipeline: PipelineKind = "latent_decoder"
    codes: list[CodeMap] = field(default_factory=list)
    likelihood: LikelihoodKind | None = None
    noise_schedule: NoiseScheduleSpec | None = None  # diffusion only
    conditioning: ClassConditioning | None = None  # class-conditional models only
    text: TextConditioning | None = None  # text-to-image models only
    generator: GeneratorSpec | None = None  # GANs only
    assets: dict[str, Path] = field(default_factory=dict)
    # numbers the model carries (a latent scale), shown beside the test metrics
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportRecipe:
    family: str
    capabilities: list[Capability]
    plan: Callable[[nn.Module], ExportPlan]


def image_spec(model: nn.Module) -> TensorSpec:
    """``image`` input/output of a model's graphs (batch, C, H, W)."""
    shape = ["batch", model.image.channels, model.image.height, model.image.width]
    return TensorSpec(name="image", dtype="float32", shape=shape)


def latent_spec(model: LatentModel, name: str = "latent") -> TensorSpec:
    """A float32 tensor of the model's latent shape, per batch item."""
    return TensorSpec(name=name, dtype="float32", shape=["batch", *model.latent_shape])


def decoder_plan(model: LatentModel) -> GraphPlan:
    """``latent`` → ``image`` through the model's decoder."""
    return GraphPlan("decoder", DecoderGraph(model), [latent_spec(model)], [image_spec(model)])


def bits_per_dim_spec() -> TensorSpec:
    return TensorSpec(name="bits_per_dim", dtype="float32", shape=["batch"])


def temperature_spec() -> TensorSpec:
    return TensorSpec(name="temperature", dtype="float32", shape=["batch"])


def vector_spec(name: str, size: int) -> TensorSpec:
    """A float32 (batch, size) input, such as a GAN's ``z``."""
    return TensorSpec(name=name, dtype="float32", shape=["batch", size])


def truncation_spec() -> TensorSpec:
    return TensorSpec(name="truncation", dtype="float32", shape=["batch"])
