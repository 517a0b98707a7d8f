"""Export recipe for the NVAE family: a hierarchical VAE served by ``latent_decoder``.

Each latent group is its own encoder output / decoder input (named ``z0``, ``z1``, … top
first, as ``LatentSpec.groups`` lists them); the sampler and ``log_prob`` take one flat
noise vector per item and split it into the groups inside the graph. All graphs run the
model in eval mode (batch norm on its running statistics), so items never interact.
"""

from __future__ import annotations

import math

import torch
from latentserve.exporters.graphs import image_to_levels
from latentserve.exporters.plans import (
    ExportPlan,
    GraphPlan,
    bits_per_dim_spec,
    image_spec,
    temperature_spec,
)
from latentserve.training.families.nvae import NVAE
from latentserve.training.likelihood import LEVELS
from torch import nn

from latentserve.manifest import LatentGroup, LatentSpec, TensorSpec


def group_names(model: NVAE) -> list[str]:
    return [f"z{i}" for i in range(len(model.latent_shapes))]


class NVAEEncoderGraph(nn.Module):
    """``image`` → one posterior mean per group, each computed given the means above it."""

    def __init__(self, model: NVAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model.encode_means(image))


class NVAEDecoderGraph(nn.Module):
    """``z0, z1, …`` → ``image``: the top-down tower with every group's latent given."""

    def __init__(self, model: NVAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, *latents: torch.Tensor) -> torch.Tensor:
        return self.model.decode_mean(list(latents))


class NVAESamplerGraph(nn.Module):
    """(``noise`` (batch, D), ``temperature``) → ``image``: ``z = mu_p + T sigma_p eps``."""

    def __init__(self, model: NVAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, noise: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        return self.model.sample(self.model.split_flat(noise), temperature)


class NVAELogProbGraph(nn.Module):
    """(``image``, ``noise`` (batch, k, D)) → ``bits_per_dim``.

    With k = 1 a one-sample estimate of the negative ELBO (``log q - log p`` at the
    sample, over every group), with k > 1 the importance-weighted bound. The bottom-up
    pass is deterministic, so it runs once per image and is shared by the k samples.
    """

    def __init__(self, model: NVAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        x = image_to_levels(image)
        batch, k = noise.shape[0], noise.shape[1]
        feats = [
            f.unsqueeze(1).expand(-1, k, -1, -1, -1).flatten(0, 1)
            for f in self.model.bottom_up(x / (LEVELS - 1))
        ]
        x_rep = x.unsqueeze(1).expand(-1, k, -1, -1, -1).flatten(0, 1)
        eps = self.model.split_flat(noise.flatten(0, 1))
        log_w = self.model.log_weight(x_rep, lambda i, like: eps[i], feats).view(batch, k)
        log_k = torch.log(torch.ones_like(log_w).sum(1))  # keeps k dynamic when traced
        nll = -(torch.logsumexp(log_w, dim=1) - log_k)
        return nll / (self.model.image.dims * math.log(2.0))


def plan_nvae(model: NVAE) -> ExportPlan:
    names = group_names(model)
    image = image_spec(model)
    dim = model.latent_dim
    latents = [
        TensorSpec(name=name, dtype="float32", shape=["batch", *shape])
        for name, shape in zip(names, model.latent_shapes, strict=True)
    ]
    noise = TensorSpec(name="noise", dtype="float32", shape=["batch", dim])
    noise_samples = TensorSpec(name="noise", dtype="float32", shape=["batch", "samples", dim])
    graphs = [
        GraphPlan("encoder", NVAEEncoderGraph(model), [image], latents),
        GraphPlan("decoder", NVAEDecoderGraph(model), latents, [image]),
        GraphPlan("sampler", NVAESamplerGraph(model), [noise, temperature_spec()], [image]),
        GraphPlan(
            "log_prob",
            NVAELogProbGraph(model),
            [image, noise_samples],
            [bits_per_dim_spec()],
        ),
    ]
    groups = [
        LatentGroup(name=name, shape=list(shape))
        for name, shape in zip(names, model.latent_shapes, strict=True)
    ]
    latent = LatentSpec(shape=[dim], groups=groups)
    return ExportPlan(graphs, latent, pipeline="latent_decoder", likelihood="elbo")
