"""Export recipes: which graphs and capabilities each family produces.

A closed registry keyed by family name, like the families themselves: a family without
a recipe cannot be exported, and no config string selects code by import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from latentserve.exporters.graphs import (
    DecoderGraph,
    EncoderGaussianGraph,
    EncoderMeanGraph,
    SamplerGraph,
)
from latentserve.training.families import LatentModel
from latentserve.training.registry import ClosedRegistry
from torch import nn

from latentserve.manifest import Capability, GraphRole, TensorSpec


@dataclass(frozen=True)
class GraphPlan:
    """One graph to export: the module and its contract-named inputs and outputs."""

    role: GraphRole
    module: nn.Module
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def example_inputs(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """Random inputs of the declared shapes (images in [0, 1], temperatures near 1)."""
        tensors = []
        for spec in self.inputs:
            shape = [batch if isinstance(d, str) else d for d in spec.shape]
            if spec.name == "image":
                tensors.append(torch.rand(shape, generator=generator))
            elif spec.name == "temperature":
                tensors.append(0.5 + torch.rand(shape, generator=generator))
            else:
                tensors.append(torch.randn(shape, generator=generator))
        return tuple(tensors)


@dataclass(frozen=True)
class ExportRecipe:
    family: str
    capabilities: list[Capability]
    plan: Callable[[LatentModel], list[GraphPlan]]


def _image_spec(model: LatentModel) -> TensorSpec:
    shape = ["batch", model.image.channels, model.image.height, model.image.width]
    return TensorSpec(name="image", dtype="float32", shape=shape)


def _latent_spec(model: LatentModel, name: str = "latent") -> TensorSpec:
    return TensorSpec(name=name, dtype="float32", shape=["batch", *model.latent_shape])


def _decoder(model: LatentModel) -> GraphPlan:
    return GraphPlan("decoder", DecoderGraph(model), [_latent_spec(model)], [_image_spec(model)])


def plan_vae(model: LatentModel) -> list[GraphPlan]:
    temperature = TensorSpec(name="temperature", dtype="float32", shape=["batch"])
    return [
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
    ]


def plan_autoencoder(model: LatentModel) -> list[GraphPlan]:
    encoder = GraphPlan(
        "encoder", EncoderMeanGraph(model), [_image_spec(model)], [_latent_spec(model)]
    )
    return [encoder, _decoder(model)]


RECIPES: ClosedRegistry[ExportRecipe] = ClosedRegistry("export recipe for family")


def register_recipe(recipe: ExportRecipe) -> ExportRecipe:
    """Add a family's recipe; a second one for the same family is refused."""
    return RECIPES.register(recipe.family, recipe)


def get_recipe(family: str) -> ExportRecipe:
    return RECIPES.get(family)


register_recipe(ExportRecipe("vae", ["sample", "encode", "reconstruct"], plan_vae))
register_recipe(ExportRecipe("autoencoder", ["encode", "reconstruct"], plan_autoencoder))
