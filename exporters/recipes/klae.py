"""Export recipe for the KL autoencoder: the ``latent_decoder`` pipeline's ``encoder``
(image → posterior mean) and ``decoder`` (latent → image), for encode and reconstruct.

Both graphs take and give *unscaled* latents; ``latent_scale`` rides along in the
manifest's provenance metrics. A latent-diffusion recipe reuses ``encoder_plan`` and
``decoder_plan`` on its frozen autoencoder and puts the same scale into
the noise schedule's ``latent_scale``, so the server divides samples by it before decoding.
"""

from __future__ import annotations

from latentserve.exporters.graphs import MethodGraph
from latentserve.exporters.plans import (
    ExportPlan,
    GraphPlan,
    image_spec,
    latent_spec,
)
from latentserve.training.families.klae import KLAutoencoder

from latentserve.manifest import LatentSpec


def encoder_plan(model: KLAutoencoder) -> GraphPlan:
    """``image`` in [0, 1] → ``latent``, the posterior mean."""
    return GraphPlan(
        "encoder",
        MethodGraph(model, KLAutoencoder.encode),
        [image_spec(model)],
        [latent_spec(model)],
    )


def decoder_plan(model: KLAutoencoder) -> GraphPlan:
    """``latent`` → ``image`` in [0, 1]."""
    return GraphPlan(
        "decoder",
        MethodGraph(model, KLAutoencoder.decode),
        [latent_spec(model)],
        [image_spec(model)],
    )


def plan_klae(model: KLAutoencoder) -> ExportPlan:
    return ExportPlan(
        [encoder_plan(model), decoder_plan(model)],
        LatentSpec(shape=model.latent_shape),
        metrics={"latent_scale": model.trained_scale()},
    )
