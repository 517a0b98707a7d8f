"""Export recipes: which graphs and capabilities each family produces.

A closed registry keyed by family name, like the families themselves: a family without
a recipe cannot be exported, and no config string selects code by import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from latentserve.exporters.graphs import (
    DecoderGraph,
    EncoderGaussianGraph,
    EncoderMeanGraph,
    SamplerGraph,
    VAELogProbGraph,
)
from latentserve.training.families import LatentModel
from latentserve.training.registry import ClosedRegistry
from torch import nn

from latentserve.manifest import (
    Capability,
    ClassConditioning,
    CodeMap,
    GeneratorSpec,
    GraphRole,
    LatentSpec,
    LikelihoodKind,
    PipelineKind,
    SchedulerSpec,
    TensorSpec,
    TextConditioning,
)

# Sizes given to named dynamic dimensions other than "batch" in example inputs.
EXAMPLE_DIMS = {"samples": 3}


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
    scheduler: SchedulerSpec | None = None  # diffusion only
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


def _image_spec(model: nn.Module) -> TensorSpec:
    shape = ["batch", model.image.channels, model.image.height, model.image.width]
    return TensorSpec(name="image", dtype="float32", shape=shape)


def _latent_spec(model: LatentModel, name: str = "latent") -> TensorSpec:
    return TensorSpec(name=name, dtype="float32", shape=["batch", *model.latent_shape])


def _decoder(model: LatentModel) -> GraphPlan:
    return GraphPlan("decoder", DecoderGraph(model), [_latent_spec(model)], [_image_spec(model)])


def image_spec(model: nn.Module) -> TensorSpec:
    """``image`` input/output of a model's graphs (batch, C, H, W)."""
    return _image_spec(model)


def bits_per_dim_spec() -> TensorSpec:
    return TensorSpec(name="bits_per_dim", dtype="float32", shape=["batch"])


def temperature_spec() -> TensorSpec:
    return TensorSpec(name="temperature", dtype="float32", shape=["batch"])


def plan_vae(model: LatentModel) -> ExportPlan:
    temperature = temperature_spec()
    noise_samples = TensorSpec(
        name="noise", dtype="float32", shape=["batch", "samples", *model.latent_shape]
    )
    graphs = [
        GraphPlan(
            "encoder",
            EncoderGaussianGraph(model),
            [_image_spec(model)],
            [_latent_spec(model), _latent_spec(model, "logvar")],
        ),
        _decoder(model),
        GraphPlan(
            "sampler",
            SamplerGraph(model),
            [_latent_spec(model, "noise"), temperature],
            [_image_spec(model)],
        ),
        GraphPlan(
            "log_prob",
            VAELogProbGraph(model),
            [_image_spec(model), noise_samples],
            [bits_per_dim_spec()],
        ),
    ]
    return ExportPlan(graphs, LatentSpec(shape=model.latent_shape), likelihood="elbo")


def plan_autoencoder(model: LatentModel) -> ExportPlan:
    encoder = GraphPlan(
        "encoder", EncoderMeanGraph(model), [_image_spec(model)], [_latent_spec(model)]
    )
    return ExportPlan([encoder, _decoder(model)], LatentSpec(shape=model.latent_shape))


RECIPES: ClosedRegistry[ExportRecipe] = ClosedRegistry("export recipe for family")


def register_recipe(recipe: ExportRecipe) -> ExportRecipe:
    """Add a family's recipe; a second one for the same family is refused."""
    return RECIPES.register(recipe.family, recipe)


def get_recipe(family: str) -> ExportRecipe:
    return RECIPES.get(family)


register_recipe(
    ExportRecipe("vae", ["sample", "encode", "reconstruct", "log_prob", "interpolate"], plan_vae)
)
register_recipe(ExportRecipe("autoencoder", ["encode", "reconstruct"], plan_autoencoder))

# Families whose recipes live in their own modules register when imported; they import
# the names above, so this comes last.
from latentserve.exporters import (  # noqa: E402, F401  (registers)
    ddpm_recipe,
    gan_recipe,
    glow_recipe,
    klae_recipe,
    ldm_recipe,
    nvae_recipe,
    pixelcnn_recipe,
    vq2_recipe,
    vq_recipe,
)
