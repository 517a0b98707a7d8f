"""Export recipe for VQ-VAE: the ``autoregressive_prior`` pipeline's graphs.

The server samples a code map by calling the ``prior`` graph once per position in
raster order and drawing that position's code from ``softmax(logits / temperature)``,
then decodes the map with ``decoder``. No graph draws random numbers, and the encoder
is deterministic, so ``log_prob`` needs no noise input: it is the same bound
``-log p(x|c) - log p(c)`` with c = enc(x) that ``VQVAE.evaluate`` reports.
"""

from __future__ import annotations

from latentserve.exporters.graphs import CodeLengthGraph, MethodGraph
from latentserve.exporters.plans import (
    ExportPlan,
    GraphPlan,
    bits_per_dim_spec,
    image_spec,
)
from latentserve.training.families.vqvae import VQVAE

from latentserve.manifest import CodeMap, LatentGroup, LatentSpec, TensorSpec

CODES = "codes"


def plan_vqvae(model: VQVAE) -> ExportPlan:
    h, w, k = model.code_height, model.code_width, model.num_codes
    codes = TensorSpec(name=CODES, dtype="int64", shape=["batch", h, w])
    logits = TensorSpec(name="logits", dtype="float32", shape=["batch", k, h, w])
    image = image_spec(model)
    int_range = {CODES: (0, k)}
    graphs = [
        GraphPlan("encoder", MethodGraph(model, VQVAE.encode_codes), [image], [codes]),
        GraphPlan(
            "decoder", MethodGraph(model, VQVAE.decode_mean), [codes], [image], int_range=int_range
        ),
        # position p's logits see only the codes before p in raster order
        GraphPlan("prior", model.prior, [codes], [logits], int_range=int_range),
        GraphPlan(
            "log_prob",
            CodeLengthGraph(model),
            [image],
            [bits_per_dim_spec()],
        ),
    ]
    latent = LatentSpec(
        shape=[h, w],
        prior="autoregressive",
        groups=[LatentGroup(name=CODES, shape=[h, w], dtype="int64")],
    )
    code_map = CodeMap(name=CODES, height=h, width=w, codebook_size=k, prior="prior")
    return ExportPlan(
        graphs,
        latent,
        pipeline="autoregressive_prior",
        codes=[code_map],
        likelihood="elbo",
    )
