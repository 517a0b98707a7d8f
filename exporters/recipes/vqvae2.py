"""Export recipe for VQ-VAE-2: the ``autoregressive_prior`` pipeline with two code maps.

The server samples ``codes_top`` position by position with ``prior_top``, then
``codes_bottom`` position by position with ``prior_bottom`` given the finished top map,
and decodes both with ``decoder``. No graph draws random numbers, and the encoder is
deterministic, so ``log_prob`` needs no noise input: it is the same three-part bound
``VQVAE2.evaluate`` reports.
"""

from __future__ import annotations

from latentserve.exporters.graphs import CodeLengthGraph, MethodGraph
from latentserve.exporters.plans import (
    ExportPlan,
    GraphPlan,
    bits_per_dim_spec,
    image_spec,
)
from latentserve.training.families.vqvae2 import VQVAE2

from latentserve.manifest import CodeMap, LatentGroup, LatentSpec, TensorSpec

TOP, BOTTOM = "codes_top", "codes_bottom"


def plan_vqvae2(model: VQVAE2) -> ExportPlan:
    (th, tw), (bh, bw) = model.top_size, model.bottom_size
    kt, kb = model.config.num_codes_top, model.config.num_codes_bottom
    top = TensorSpec(name=TOP, dtype="int64", shape=["batch", th, tw])
    bottom = TensorSpec(name=BOTTOM, dtype="int64", shape=["batch", bh, bw])
    top_logits = TensorSpec(name="logits", dtype="float32", shape=["batch", kt, th, tw])
    bottom_logits = TensorSpec(name="logits", dtype="float32", shape=["batch", kb, bh, bw])
    image = image_spec(model)
    int_range = {TOP: (0, kt), BOTTOM: (0, kb)}
    graphs = [
        GraphPlan("encoder", MethodGraph(model, VQVAE2.encode_codes), [image], [top, bottom]),
        GraphPlan(
            "decoder",
            MethodGraph(model, VQVAE2.decode_mean),
            [top, bottom],
            [image],
            int_range=int_range,
        ),
        # causal in raster order; the bottom prior sees the whole top map
        GraphPlan(
            "prior_top",
            model.prior_top,
            [top],
            [top_logits],
            int_range=int_range,
        ),
        GraphPlan(
            "prior_bottom",
            model.prior_bottom,
            [bottom, top],
            [bottom_logits],
            int_range=int_range,
        ),
        GraphPlan(
            "log_prob",
            CodeLengthGraph(model),
            [image],
            [bits_per_dim_spec()],
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
