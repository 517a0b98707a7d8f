"""Export recipe for DCGAN: the generator as one ``sampler`` graph of the ``gan`` pipeline,
(``z``, ``truncation``) → image, with ``z`` scaled by ψ (towards the prior's mean); the
trained generator in eval mode (batch norm on its running statistics). The server owns
every seed, so the same request gives the same images in either format."""

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
from latentserve.training.families.dcgan import DCGAN, DCGenerator
from torch import nn

from latentserve.manifest import GeneratorSpec, LatentSpec


class DCGANSamplerGraph(nn.Module):
    def __init__(self, generator: DCGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor, truncation: torch.Tensor) -> torch.Tensor:
        return generator_to_unit(self.generator(z * truncation.reshape(-1, 1)))


def plan_dcgan(model: DCGAN) -> ExportPlan:
    z_dim = model.config.z_dim
    sampler = GraphPlan(
        "sampler",
        DCGANSamplerGraph(model.ema.shadow),
        [vector_spec("z", z_dim), truncation_spec()],
        [image_spec(model)],
    )
    return ExportPlan(
        [sampler], LatentSpec(shape=[z_dim]), pipeline="gan", generator=GeneratorSpec()
    )
