"""Parameters of the diffusion pipeline's methods: ``sample``, ``text_to_image`` and
``interpolate``.

Both generating methods share the sampler settings (``DenoisingParams``); class-conditional
sampling adds a class label, text-to-image a prompt, a negative prompt and, for img2img, an
image and a strength, for inpainting also a mask; ``interpolate`` takes the frames' step
count and class (its sampler is DDIM). Checks that need the model (its step limit, its
classes, whether it can encode an image) live in the pipeline, next to what they protect.
"""

from __future__ import annotations

from typing import ClassVar

from latentserve.server.params import SampleParams
from latentserve.server.pipelines.interpolation import InterpolateParams
from pydantic import Field

MAX_GUIDANCE = 30.0


class DenoisingParams(SampleParams):
    """Sampler settings every diffusion request has; unset ones take the model's defaults."""

    kind: ClassVar[str] = "diffusion"

    steps: int | None = Field(default=None, description="denoiser steps (default: the model's)")
    sampler: str | None = Field(default=None, description="ddpm, ddim, dpmpp_2m or euler_a")
    eta: float = Field(default=0.0, description="DDIM noise (0 = deterministic, 1 = DDPM-like)")
    guidance_scale: float | None = Field(
        default=None, description="classifier-free guidance scale (conditional models)"
    )
    preview_every: int = Field(default=0, description="send a preview every k steps (0: none)")


class DiffusionParams(DenoisingParams):
    """``sample``: unconditional, or one class of a class-conditional model."""

    class_label: int | None = Field(
        default=None, description="class to draw (conditional models; omit for any class)"
    )


class TextToImageParams(DenoisingParams):
    """``text_to_image``: a prompt, optionally a negative one and a starting image."""

    kind: ClassVar[str] = "text-to-image"

    prompt: str = Field(description="what to draw")
    negative_prompt: str = Field(default="", description="what to steer away from")
    image: bytes | None = Field(default=None, description="img2img: the PNG to start from")
    strength: float | None = Field(
        default=None, description="img2img: how much of the image to redraw, (0, 1]"
    )
    mask: bytes | None = Field(
        default=None,
        description="inpainting: a PNG whose transparent pixels (alpha 0) mark what to "
        "repaint; the rest of the image comes back as it went in",
    )


class DiffusionInterpolateParams(InterpolateParams):
    """``interpolate``: every frame is denoised with DDIM (eta = 0) from slerped noise, so
    the sampler is fixed; the step count and class are the frames' own."""

    kind: ClassVar[str] = "diffusion"

    steps: int | None = DenoisingParams.model_fields["steps"]
    guidance_scale: float | None = DenoisingParams.model_fields["guidance_scale"]
    class_label: int | None = DiffusionParams.model_fields["class_label"]
