"""Export recipe for DDPM: the ``diffusion`` pipeline's ``denoiser`` graph.

The graph is the EMA network (the weights DDPM evaluates and samples with), one call per
sampler step for a whole batch: each row carries its own timestep (and class label), so
the server can batch rows of different requests at different steps. The sampler itself
(DDIM, ancestral, guidance) is numpy in the server, driven by the manifest's
``noise_schedule`` section, which holds the ``alphas_cumprod`` the network was trained with.
"""

from __future__ import annotations

from latentserve.exporters.graphs import MethodGraph
from latentserve.exporters.plans import ExportPlan, GraphPlan
from latentserve.training.families.ddpm import DDPM
from latentserve.training.families.unet import UNet

from latentserve.manifest import ClassConditioning, LatentSpec, NoiseScheduleSpec, TensorSpec

# Guidance the server applies when a request names none: with labels dropped 10% of the
# time in training, a moderate scale sharpens class identity without saturating.
DEFAULT_GUIDANCE_SCALE = 2.0


def plan_ddpm(model: DDPM) -> ExportPlan:
    config = model.config
    shape = [model.image.channels, model.image.height, model.image.width]
    inputs = [
        TensorSpec(name="sample", dtype="float32", shape=["batch", *shape]),
        TensorSpec(name="timestep", dtype="float32", shape=["batch"]),
    ]
    int_range = {"timestep": (0, config.num_train_timesteps)}
    conditioning = None
    if config.num_classes:
        inputs.append(TensorSpec(name="class_label", dtype="int64", shape=["batch"]))
        int_range["class_label"] = (0, model.null_label + 1)  # the null label included
        conditioning = ClassConditioning(
            num_classes=config.num_classes,
            null_label=model.null_label,
            default_guidance_scale=DEFAULT_GUIDANCE_SCALE,
            labels=[str(i) for i in range(config.num_classes)],
        )
    denoiser = GraphPlan(
        "denoiser",
        MethodGraph(model.ema.shadow, UNet.forward),
        inputs,
        [TensorSpec(name="prediction", dtype="float32", shape=["batch", *shape])],
        int_range=int_range,
    )
    noise_schedule = NoiseScheduleSpec(
        alphas_cumprod=model.alphas_cumprod.tolist(),
        prediction_type=config.prediction_type,
        sample_range=(-1.0, 1.0),
        clip_sample=True,
        default_sampler="ddim",
        default_steps=50,
    )
    return ExportPlan(
        [denoiser],
        LatentSpec(shape=shape),
        pipeline="diffusion",
        noise_schedule=noise_schedule,
        conditioning=conditioning,
    )
