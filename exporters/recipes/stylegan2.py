"""Export recipe for StyleGAN2: the EMA generator as one ``sampler`` graph of the ``gan``
pipeline.

(``z``, ``truncation``, ``mix_z``, ``mix_layer``, ``layer_noise``) → image in [0, 1]: both
latents are mapped to ``w``, truncated towards the running mean ``w_avg``
(``w_avg + ψ (w - w_avg)``), and style indices from ``mix_layer`` on take ``mix_z``'s
``w``. The graph takes every random input (the per-layer noise maps too), so the server
owns every seed and the same request gives the same images in either format.
"""

from __future__ import annotations

import torch
from latentserve.exporters.graphs import generator_to_unit
from latentserve.exporters.plans import (
    ExportPlan,
    GraphPlan,
    image_spec,
    truncation_spec,
    vector_spec,
)
from latentserve.training.families.stylegan2 import StyleGAN2, StyleGenerator
from torch import nn

from latentserve.manifest import GeneratorSpec, LatentSpec, TensorSpec


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
        return generator_to_unit(g.synthesis(ws, g.split_noise(layer_noise)))


def plan_stylegan2(model: StyleGAN2) -> ExportPlan:
    generator = model.ema.shadow
    z_dim = model.config.z_dim
    inputs = [
        vector_spec("z", z_dim),
        truncation_spec(),
        vector_spec("mix_z", z_dim),
        TensorSpec(name="mix_layer", dtype="int64", shape=["batch"]),
        vector_spec("layer_noise", generator.noise_size),
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
