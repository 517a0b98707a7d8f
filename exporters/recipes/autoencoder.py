"""Export recipe for the plain autoencoder: encoder (the code) and decoder; no prior, so
nothing to sample from."""

from __future__ import annotations

from latentserve.exporters.graphs import EncoderMeanGraph
from latentserve.exporters.plans import (
    ExportPlan,
    GraphPlan,
    decoder_plan,
    image_spec,
    latent_spec,
)
from latentserve.training.families import LatentModel

from latentserve.manifest import LatentSpec


def plan_autoencoder(model: LatentModel) -> ExportPlan:
    encoder = GraphPlan(
        "encoder", EncoderMeanGraph(model), [image_spec(model)], [latent_spec(model)]
    )
    return ExportPlan([encoder, decoder_plan(model)], LatentSpec(shape=model.latent_shape))
