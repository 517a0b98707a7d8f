"""GAN export: the generator as one ``sampler`` graph of the ``gan`` pipeline.

The graph takes every random input the generator has (``z``; for a style-based one also
the per-layer noise maps) plus the controls, so the server owns every seed and the same
request gives the same images in either format. Images leave the graph in [0, 1].

- DCGAN: (``z``, ``truncation``) → image, with ``z`` scaled by ψ (towards the prior's
  mean); the trained generator in eval mode (batch norm on its running statistics).
- StyleGAN2: (``z``, ``truncation``, ``mix_z``, ``mix_layer``, ``layer_noise``) → image:
  both latents are mapped to ``w``, truncated towards the running mean ``w_avg``
  (``w_avg + ψ (w - w_avg)``), and style indices from ``mix_layer`` on take ``mix_z``'s
  ``w``; the EMA generator.
"""

from __future__ import annotations

import torch
from latentserve.exporters.recipes import (
    ExportPlan,
    ExportRecipe,
    GraphPlan,
    image_spec,
    register_recipe,
)
from latentserve.training.families.dcgan import DCGAN, DCGenerator
from latentserve.training.families.stylegan2 import StyleGAN2, StyleGenerator
from torch import nn

from latentserve.manifest import GeneratorSpec, LatentSpec, TensorSpec


def to_unit(image: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] → image in [0, 1]."""
    return ((image + 1.0) * 0.5).clamp(0.0, 1.0)


class DCGANSamplerGraph(nn.Module):
    def __init__(self, generator: DCGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor, truncation: torch.Tensor) -> torch.Tensor:
        return to_unit(self.generator(z * truncation.reshape(-1, 1)))


class StyleSamplerGraph(nn.Module):
    def __init__(self, generator: StyleGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(
        self,
        z: torch.Tensor,
        truncation: torch.Tensor,
        mix_z: torch.Tensor,
        mix_layer: torch.Tensor,
        layer_noise: torch.Tensor,
    ) -> torch.Tensor:
        g = self.generator
        w = g.mapping.truncate(g.mapping(z), truncation)
        w_mix = g.mapping.truncate(g.mapping(mix_z), truncation)
        ws = g.mixed_ws(w, w_mix, mix_layer)
        return to_unit(g.synthesis(ws, g.split_noise(layer_noise)))


def _vector(name: str, size: int) -> TensorSpec:
    return TensorSpec(name=name, dtype="float32", shape=["batch", size])


def _truncation() -> TensorSpec:
    return TensorSpec(name="truncation", dtype="float32", shape=["batch"])


def plan_dcgan(model: DCGAN) -> ExportPlan:
    z_dim = model.config.z_dim
    sampler = GraphPlan(
        "sampler",
        DCGANSamplerGraph(model.ema.shadow),
        [_vector("z", z_dim), _truncation()],
        [image_spec(model)],
    )
    return ExportPlan(
        [sampler], LatentSpec(shape=[z_dim]), pipeline="gan", generator=GeneratorSpec()
    )


def plan_stylegan2(model: StyleGAN2) -> ExportPlan:
    generator = model.ema.shadow
    z_dim = model.config.z_dim
    inputs = [
        _vector("z", z_dim),
        _truncation(),
        _vector("mix_z", z_dim),
        TensorSpec(name="mix_layer", dtype="int64", shape=["batch"]),
        _vector("layer_noise", generator.noise_size),
    ]
    sampler = GraphPlan(
        "sampler",
        StyleSamplerGraph(generator),
        inputs,
        [image_spec(model)],
        int_range={"mix_layer": (0, generator.num_ws + 1)},
    )
    return ExportPlan(
        [sampler],
        LatentSpec(shape=[z_dim]),
        pipeline="gan",
        generator=GeneratorSpec(style_layers=generator.num_ws),
    )


register_recipe(ExportRecipe("dcgan", ["sample", "interpolate"], plan_dcgan))
register_recipe(ExportRecipe("stylegan2", ["sample", "interpolate"], plan_stylegan2))
