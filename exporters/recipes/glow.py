"""Glow export: the flow's exact forward pass and inverse as ``latent_decoder`` graphs.

A flow needs no approximate decoder: ``encoder`` is the forward pass, ``decoder`` and
``sampler`` the exact inverse; ``log_prob`` bounds the 8-bit code length with the exact
density over dequantization noise. Images are 8-bit, so the
graphs read a pixel ``k`` as the centre of its dequantization bin, ``x = (k + 1/2) / 256
- 1/2`` (the flow's input scale, see ``training.families.glow``), and map a flow output
``x`` back to the bin it falls in.

Two things do not export as trained: the LU-parameterised 1×1 convolutions build their
weight with ``torch.diag`` and invert it with ``torch.linalg.inv``. ``frozen_flow``
therefore exports a copy whose 1×1 convs hold their weight and its inverse as constants,
computed once in float64.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from latentserve.exporters.graphs import image_to_levels
from latentserve.exporters.plans import (
    IMAGE_TOLERANCE,
    ExportPlan,
    GraphPlan,
    bits_per_dim_spec,
    image_spec,
    temperature_spec,
)
from latentserve.training.families.flows import InvConv1x1
from latentserve.training.families.glow import LEVELS, Glow
from torch import nn

from latentserve.manifest import LatentGroup, LatentSpec, TensorSpec


class FrozenInvConv1x1(nn.Module):
    """A trained ``InvConv1x1`` with its weight and inverse precomputed as constants."""

    def __init__(self, conv: InvConv1x1) -> None:
        super().__init__()
        with torch.no_grad():
            weight = conv.weight().double()
            self.register_buffer("w", weight.float()[:, :, None, None])
            self.register_buffer("w_inv", torch.linalg.inv(weight).float()[:, :, None, None])
            self.register_buffer("log_s_sum", conv.log_s.sum().detach().clone())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = x.shape[2] * x.shape[3] * self.log_s_sum
        return F.conv2d(x, self.w), logdet.expand(x.shape[0])

    def reverse(self, y: torch.Tensor) -> torch.Tensor:
        return F.conv2d(y, self.w_inv)


def frozen_flow(model: Glow) -> Glow:
    """An eval-mode copy of ``model`` whose 1×1 convs are exportable constants.

    The original stays untouched (it may still train); eval mode keeps ActNorm from ever
    re-initialising from the batch a graph is traced with.
    """
    frozen = copy.deepcopy(model).eval()
    for module in list(frozen.modules()):
        for name, child in module.named_children():
            if isinstance(child, InvConv1x1):
                setattr(module, name, FrozenInvConv1x1(child))
    return frozen.requires_grad_(False)


def levels_to_flow(image: torch.Tensor) -> torch.Tensor:
    """8-bit image in [0, 1] → the centre of each pixel's bin on the flow's scale."""
    return (image_to_levels(image) + 0.5) / LEVELS - 0.5


def flow_to_image(x: torch.Tensor) -> torch.Tensor:
    """Flow output → image in [0, 1] on which 8-bit rounding picks the bin ``x`` is in.

    ``(x + 1/2) * 256 - 1/2`` puts every bin centre on its integer level, so
    ``round(255 * image)`` (what a PNG encoder does) equals ``floor((x + 1/2) * 256)``
    clamped to 0..255. The graph itself stays continuous: a ``floor`` inside it would let
    a 1e-7 runtime difference at a bin edge flip a pixel by a whole level, and parity
    between ONNX Runtime and PyTorch would hold only by luck.
    """
    return (((x + 0.5) * LEVELS - 0.5) / (LEVELS - 1)).clamp(0.0, 1.0)


class GlowEncoderGraph(nn.Module):
    """``image`` → one latent per group (``z0`` finest first): the exact forward pass."""

    def __init__(self, model: Glow) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model.encode(levels_to_flow(image)).latents)


class GlowDecoderGraph(nn.Module):
    """``z0``, ``z1``, … → ``image``: the exact inverse, back on the 8-bit bins."""

    def __init__(self, model: Glow) -> None:
        super().__init__()
        self.model = model

    def forward(self, *latents: torch.Tensor) -> torch.Tensor:
        return flow_to_image(self.model.decode(list(latents)))


class GlowSamplerGraph(nn.Module):
    """(flat ``noise``, ``temperature``) → ``image``: top-down sampling of the split priors.

    The server draws one flat standard-normal vector per image; the graph cuts it into
    the groups' shapes (finest first, in manifest order) and samples each factored-out
    latent from its prior conditioned on the levels above.
    """

    def __init__(self, model: Glow) -> None:
        super().__init__()
        self.model = model
        self.shapes = [tuple(s) for s in model.latent_shapes]

    def forward(self, noise: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        noises, start = [], 0
        for shape in self.shapes:
            size = math.prod(shape)
            noises.append(noise[:, start : start + size].reshape((-1, *shape)))
            start += size
        sample = self.model.sample(noises, temperature)  # (x + 1/2) clamped to [0, 1]
        return flow_to_image(sample - 0.5)


class GlowLogProbGraph(nn.Module):
    """(``image``, ``noise``) → ``bits_per_dim``: the dequantization bound on the 8-bit code.

    The flow's density is exact, but it is a density of continuous ``y = k + u``; the
    probability of the 8-bit image ``k`` is its integral over the bin, bounded by
    sampling ``u`` (see ``training.families.glow``). Each of the ``samples`` standard
    normals per pixel the server draws becomes ``u = Phi(n)``, uniform on [0, 1). With one
    sample this is the uniform-dequantization ELBO estimate training reports; with k it is
    the importance-weighted bound ``-log (1/k) sum_i p_Y(k + u_i)``, tighter as k grows.
    (The density at the bin centres alone would read about 0.5 bits/dim lower on MNIST
    and bound nothing, which would flatter the flow against the other families.)
    """

    def __init__(self, model: Glow) -> None:
        super().__init__()
        self.model = model
        self.dims = model.image.dims

    def forward(self, image: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        levels = image_to_levels(image)
        batch, k = noise.shape[0], noise.shape[1]
        u = (0.5 * (1.0 + torch.erf(noise * (1.0 / math.sqrt(2.0))))).clamp(0.0, 1.0 - 1e-6)
        y = levels.flatten(1).unsqueeze(1) + u  # (batch, k, D)
        x = (y / LEVELS - 0.5).reshape((-1, *image.shape[1:]))
        out = self.model.encode(x)
        log_p = (out.log_prior + out.logdet).view(batch, k) - self.dims * math.log(LEVELS)
        log_k = torch.log(torch.ones_like(log_p).sum(1))  # from the tensor: k stays dynamic
        nats = -(torch.logsumexp(log_p, dim=1) - log_k)
        return nats / (self.dims * math.log(2.0))


def latent_spec(model: Glow) -> LatentSpec:
    """Flat sampler noise of all ``D`` dimensions, and one group per level (finest first)."""
    groups = [
        LatentGroup(name=f"z{i}", shape=list(shape)) for i, shape in enumerate(model.latent_shapes)
    ]
    return LatentSpec(shape=[model.image.dims], groups=groups)


def plan_glow(model: Glow) -> ExportPlan:
    flow = frozen_flow(model)
    latent = latent_spec(model)
    image = image_spec(model)
    groups = [
        TensorSpec(name=g.name, dtype="float32", shape=["batch", *g.shape]) for g in latent.groups
    ]
    noise = TensorSpec(name="noise", dtype="float32", shape=["batch", *latent.shape])
    # Wrappers in eval mode too: exporters restore a module's mode recursively, and a
    # wrapper left in training mode would switch the flow (and its actnorms) back to it.
    graphs = [
        GraphPlan("encoder", GlowEncoderGraph(flow).eval(), [image], groups),
        GraphPlan("decoder", GlowDecoderGraph(flow).eval(), groups, [image]),
        GraphPlan(
            "sampler",
            GlowSamplerGraph(flow).eval(),
            [noise, temperature_spec()],
            [image],
            tolerance=IMAGE_TOLERANCE,
        ),
        GraphPlan(
            "log_prob",
            GlowLogProbGraph(flow).eval(),
            [
                image,
                TensorSpec(
                    name="noise", dtype="float32", shape=["batch", "samples", *latent.shape]
                ),
            ],
            [bits_per_dim_spec()],
        ),
    ]
    return ExportPlan(graphs, latent, likelihood="elbo")
