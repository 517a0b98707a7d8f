"""Export recipe for the pixel-level PixelCNN: the ``autoregressive_prior`` pipeline with
the pixels as the code map.

The ``prior`` is the position step graph (logits at one pixel from the rows it sees), so
the server's per-pixel steps cost a few rows each instead of the whole image; the
``decoder`` only rescales levels to [0, 1]; ``log_prob`` is the exact code length of the
8-bit image (no noise input, ``likelihood`` exact). There is no encoder: the image is its
own code map.
"""

from __future__ import annotations

from latentserve.exporters.graphs import CodeLengthGraph, MethodGraph
from latentserve.exporters.plans import (
    ExportPlan,
    GraphPlan,
    bits_per_dim_spec,
    image_spec,
)
from latentserve.training.families.pixelcnn_pixels import PixelCNN
from latentserve.training.likelihood import LEVELS

from latentserve.manifest import CodeMap, LatentGroup, LatentSpec, TensorSpec

PIXELS = "pixels"


def plan_pixelcnn(model: PixelCNN) -> ExportPlan:
    h, w = model.image.height, model.image.width
    pixels = TensorSpec(name=PIXELS, dtype="int64", shape=["batch", h, w])
    position = TensorSpec(name="position", dtype="int64", shape=["batch"])
    logits = TensorSpec(name="logits", dtype="float32", shape=["batch", LEVELS])
    ranges = {PIXELS: (0, LEVELS), "position": (0, h * w)}
    graphs = [
        GraphPlan("prior", model.position_step(), [pixels, position], [logits], int_range=ranges),
        GraphPlan(
            "decoder",
            MethodGraph(model, PixelCNN.levels_to_image),
            [pixels],
            [image_spec(model)],
            int_range=ranges,
        ),
        GraphPlan("log_prob", CodeLengthGraph(model), [image_spec(model)], [bits_per_dim_spec()]),
    ]
    latent = LatentSpec(
        shape=[h, w],
        prior="autoregressive",
        groups=[LatentGroup(name=PIXELS, shape=[h, w], dtype="int64")],
    )
    code_map = CodeMap(
        name=PIXELS, height=h, width=w, codebook_size=LEVELS, prior="prior", step="position"
    )
    return ExportPlan(
        graphs, latent, pipeline="autoregressive_prior", codes=[code_map], likelihood="exact"
    )
