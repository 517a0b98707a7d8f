"""Export recipe for VQ-VAE-2: the ``autoregressive_prior`` pipeline with two code maps.

The server samples ``codes_top`` position by position with ``prior_top``, then
``codes_bottom`` position by position with ``prior_bottom`` given the finished top map,
and decodes both with ``decoder``. No graph draws random numbers, and the encoder is
deterministic, so ``log_prob`` needs no noise input: it is the same three-part bound
``VQVAE2.evaluate`` reports.
"""

from __future__ import annotations

import math

import torch
from latentserve.exporters.graphs import image_to_levels
from latentserve.exporters.recipes import (
    LOG_PROB_TOLERANCE,
    ExportPlan,
    ExportRecipe,
    GraphPlan,
    bits_per_dim_spec,
    image_spec,
    register_recipe,
)
from latentserve.training.families.vqvae2 import VQVAE2
from torch import nn

from latentserve.manifest import CodeMap, LatentGroup, LatentSpec, TensorSpec

TOP, BOTTOM = "codes_top", "codes_bottom"


class TwoLevelEncoderGraph(nn.Module):
    """``image`` → (``codes_top`` (batch, 7, 7), ``codes_bottom`` (batch, 14, 14)) int64."""

    def __init__(self, model: VQVAE2) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode_codes(image)


class TwoLevelDecoderGraph(nn.Module):
    """(``codes_top``, ``codes_bottom``) → ``image`` in [0, 1] (the clamped logistic location)."""

    def __init__(self, model: VQVAE2) -> None:
        super().__init__()
        self.model = model

    def forward(self, codes_top: torch.Tensor, codes_bottom: torch.Tensor) -> torch.Tensor:
        return self.model.decode_mean(codes_top, codes_bottom)


class TopPriorGraph(nn.Module):
    """``codes_top`` → ``logits`` (batch, Kt, 7, 7), causal in raster order."""

    def __init__(self, model: VQVAE2) -> None:
        super().__init__()
        self.model = model

    def forward(self, codes_top: torch.Tensor) -> torch.Tensor:
        return self.model.prior_top(codes_top)


class BottomPriorGraph(nn.Module):
    """(``codes_bottom``, ``codes_top``) → ``logits`` (batch, Kb, 14, 14): causal in the
    bottom codes, seeing the whole top map."""

    def __init__(self, model: VQVAE2) -> None:
        super().__init__()
        self.model = model

    def forward(self, codes_bottom: torch.Tensor, codes_top: torch.Tensor) -> torch.Tensor:
        return self.model.prior_bottom(codes_bottom, codes_top)


class TwoLevelLogProbGraph(nn.Module):
    """``image`` → ``bits_per_dim``: the decoder's and both priors' code lengths."""

    def __init__(self, model: VQVAE2) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        nats = self.model.code_lengths(image_to_levels(image))["bits_per_dim"]
        return nats / (self.model.image.dims * math.log(2.0))


def plan_vqvae2(model: VQVAE2) -> ExportPlan:
    (th, tw), (bh, bw) = model.top_size, model.bottom_size
    kt, kb = model.config.num_codes_top, model.config.num_codes_bottom
    top = TensorSpec(name=TOP, dtype="int64", shape=["batch", th, tw])
    bottom = TensorSpec(name=BOTTOM, dtype="int64", shape=["batch", bh, bw])
    top_logits = TensorSpec(name="logits", dtype="float32", shape=["batch", kt, th, tw])
    bottom_logits = TensorSpec(name="logits", dtype="float32", shape=["batch", kb, bh, bw])
    image = image_spec(model)
    int_high = {TOP: kt, BOTTOM: kb}
    graphs = [
        GraphPlan("encoder", TwoLevelEncoderGraph(model), [image], [top, bottom]),
        GraphPlan(
            "decoder", TwoLevelDecoderGraph(model), [top, bottom], [image], int_high=int_high
        ),
        GraphPlan("prior_top", TopPriorGraph(model), [top], [top_logits], int_high=int_high),
        GraphPlan(
            "prior_bottom",
            BottomPriorGraph(model),
            [bottom, top],
            [bottom_logits],
            int_high=int_high,
        ),
        GraphPlan(
            "log_prob",
            TwoLevelLogProbGraph(model),
            [image],
            [bits_per_dim_spec()],
            tolerance=LOG_PROB_TOLERANCE,
        ),
    ]
    latent = LatentSpec(
        shape=[bh, bw],
        prior="autoregressive",
        groups=[
            LatentGroup(name=TOP, shape=[th, tw], dtype="int64"),
            LatentGroup(name=BOTTOM, shape=[bh, bw], dtype="int64"),
        ],
    )
    codes = [  # in sampling order: the bottom map is drawn given the finished top map
        CodeMap(name=TOP, height=th, width=tw, codebook_size=kt, prior="prior_top"),
        CodeMap(
            name=BOTTOM,
            height=bh,
            width=bw,
            codebook_size=kb,
            prior="prior_bottom",
            conditions=[TOP],
        ),
    ]
    return ExportPlan(
        graphs, latent, pipeline="autoregressive_prior", codes=codes, likelihood="elbo"
    )


register_recipe(
    ExportRecipe("vqvae2", ["sample", "encode", "reconstruct", "log_prob"], plan_vqvae2)
)
