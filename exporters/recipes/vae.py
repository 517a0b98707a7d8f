"""Export recipe for the VAE: encoder (mean and log-variance), decoder, a ``sampler`` from
prior noise, and a ``log_prob`` graph that takes its posterior samples' noise as input."""

from __future__ import annotations

from latentserve.exporters.graphs import EncoderGaussianGraph, SamplerGraph, VAELogProbGraph
from latentserve.exporters.plans import (
    ExportPlan,
    GraphPlan,
    bits_per_dim_spec,
    decoder_plan,
    image_spec,
    latent_spec,
    temperature_spec,
)
from latentserve.training.families import LatentModel

from latentserve.manifest import LatentSpec, TensorSpec


def plan_vae(model: LatentModel) -> ExportPlan:
    noise_samples = TensorSpec(
        name="noise", dtype="float32", shape=["batch", "samples", *model.latent_shape]
    )
    graphs = [
        GraphPlan(
            "encoder",
            EncoderGaussianGraph(model),
            [image_spec(model)],
            [latent_spec(model), latent_spec(model, "logvar")],
        ),
        decoder_plan(model),
        GraphPlan(
            "sampler",
            SamplerGraph(model),
            [latent_spec(model, "noise"), temperature_spec()],
            [image_spec(model)],
        ),
        GraphPlan(
            "log_prob",
            VAELogProbGraph(model),
            [image_spec(model), noise_samples],
            [bits_per_dim_spec()],
        ),
    ]
    return ExportPlan(graphs, LatentSpec(shape=model.latent_shape), likelihood="elbo")
