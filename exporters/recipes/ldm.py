"""Export recipe for latent text-to-image (``ldm``): the ``diffusion`` pipeline with a text
encoder, a cross-attention denoiser and the frozen autoencoder's two halves.

- ``text_encoder``: the shared MiniLM, with its tokenizer as an asset (``text_encoder.py``).
- ``denoiser``: the EMA UNet on *scaled* latents, reading ``encoder_hidden_states`` under
  ``encoder_attention_mask``.
- ``encoder`` / ``decoder``: the autoencoder on *unscaled* latents (the ``klae`` plans);
  the manifest's ``latent_scale`` says how the server moves between the two.

x0 estimates are clipped to ``sample_range`` = ±4: scaled latents have about unit variance
(on ldm-mnist 0.02% of the training split's elements lie outside ±4), and the clip is what
keeps ε-prediction under the cosine schedule stable. There ᾱ at the last training timestep
is about 1e-8, so the first sampler step divides the ε error by about 1e-4: unclipped, the
x0 estimate explodes (ldm-mnist's DDIM samples reached a std of ~1,500) and the decoder
draws saturated blobs; clipped, the later, well-conditioned steps draw the digit.
"""

from __future__ import annotations

from latentserve.exporters.graphs import MethodGraph
from latentserve.exporters.plans import ExportPlan, GraphPlan
from latentserve.exporters.recipes.klae import decoder_plan, encoder_plan
from latentserve.exporters.text_encoder import (
    text_conditioning,
    text_encoder_graph,
    tokenizer_asset,
)
from latentserve.training.families.ldm import LatentDiffusion, shared_text_encoder, text_denoiser

from latentserve.manifest import LatentSpec, NoiseScheduleSpec, TensorSpec

# Guidance the server applies when a request names none: captions were dropped 10% of
# the time in training; a moderate scale makes the digit follow the prompt without
# saturating the tiny model's latents.
DEFAULT_GUIDANCE_SCALE = 4.0
SAMPLE_RANGE = (-4.0, 4.0)


def denoiser_plan(model: LatentDiffusion) -> GraphPlan:
    """(``sample``, ``timestep``, ``encoder_hidden_states``, ``encoder_attention_mask``) →
    ``prediction`` (ε), the EMA weights."""
    latent = ["batch", *model.latent_shape]
    tokens = ["batch", model.config.max_tokens]
    return GraphPlan(
        "denoiser",
        MethodGraph(model.ema.shadow, text_denoiser),
        [
            TensorSpec(name="sample", dtype="float32", shape=latent),
            TensorSpec(name="timestep", dtype="float32", shape=["batch"]),
            TensorSpec(
                name="encoder_hidden_states",
                dtype="float32",
                shape=[*tokens, model.text_hidden_size],
            ),
            TensorSpec(name="encoder_attention_mask", dtype="int64", shape=tokens),
        ],
        [TensorSpec(name="prediction", dtype="float32", shape=latent)],
        int_range={
            "timestep": (0, model.config.num_train_timesteps),
            "encoder_attention_mask": (0, 2),
        },
    )


def plan_ldm(model: LatentDiffusion) -> ExportPlan:
    config = model.config
    text = text_encoder_graph(config.max_tokens, shared_text_encoder())
    noise_schedule = NoiseScheduleSpec(
        alphas_cumprod=model.alphas_cumprod.tolist(),
        prediction_type=config.prediction_type,
        sample_range=SAMPLE_RANGE,
        clip_sample=True,
        latent_scale=model.latent_scale,
        default_sampler="ddim",
        default_steps=50,
    )
    autoencoder = model.autoencoder
    return ExportPlan(
        [text, denoiser_plan(model), encoder_plan(autoencoder), decoder_plan(autoencoder)],
        LatentSpec(shape=model.latent_shape),
        pipeline="diffusion",
        noise_schedule=noise_schedule,
        text=text_conditioning(text, DEFAULT_GUIDANCE_SCALE),
        assets=dict([tokenizer_asset()]),
        metrics={"latent_scale": model.latent_scale},
    )
