"""The REST API's bodies: what each route takes and answers, as the OpenAPI document shows."""

from __future__ import annotations

from typing import Any, Literal

from latentserve.server.frontends.rest.params_body import ParamsBody
from latentserve.server.params import MAX_SEED
from pydantic import BaseModel, ConfigDict, Field


class StrictRequest(BaseModel):
    # Strict: "n": "3" is a client bug worth a 422, not something to coerce silently.
    model_config = ConfigDict(extra="forbid", strict=True)


SAMPLE_BODY = ParamsBody(
    "sample",
    description=(
        "Sample parameters of the model's kind (GET /v1/models/{model} lists them as "
        "`sample_parameters`): "
        "every model takes `n` and `seed`; VAE, NVAE, Glow and VQ models take `temperature` "
        "(default: the model's `sample_defaults`); "
        "diffusion models take `steps`, `sampler` (ddpm, ddim, dpmpp_2m, euler_a), `eta`, "
        "`preview_every`, and when class-conditional `class_label` and `guidance_scale`; GANs "
        "take `truncation`, style-based GANs also `mix_seed` and `mix_layer`. "
        "A field the model's kind does not have is refused with 422 naming it."
    ),
    examples=[{"n": 4, "seed": 0}, {"n": 4, "seed": 0, "steps": 20, "sampler": "dpmpp_2m"}],
)


TEXT_TO_IMAGE_BODY = ParamsBody(
    "text_to_image",
    required=True,
    description=(
        "`prompt` (required), `negative_prompt`, `n`, `seed`, `steps`, `sampler`, `eta`, "
        "`guidance_scale`, `preview_every`; img2img: `image` (base64 PNG of the model's "
        "size) and `strength` in (0, 1]; inpainting: also `mask` (base64 PNG whose "
        "transparent pixels mark what to repaint)."
    ),
    examples=[{"prompt": "a handwritten 7", "n": 4, "seed": 0, "guidance_scale": 5.0}],
)


INTERPOLATE_BODY = ParamsBody(
    "interpolate",
    description=(
        "`seed_a`, `seed_b` (omit to let the server draw them), `frames` (2..64, default 8), "
        "and the model's own sample settings: `temperature` (VAE, NVAE, Glow), `steps`, "
        "`class_label`, `guidance_scale` (diffusion: frames are DDIM, eta 0). Models that "
        "encode take `image_a` and `image_b` (base64 PNGs) instead of seeds."
    ),
    examples=[{"seed_a": 1, "seed_b": 2, "frames": 8}],
)


class InterpolateResponse(BaseModel):
    model: str
    seed_a: int | None = Field(description="unset between images")
    seed_b: int | None
    images: list[str] = Field(description="base64 PNG frames, seed_a's image first")


class JobRequest(StrictRequest):
    model: str = Field(description="model name, or name@version")
    method: str = Field(default="sample", description="sample or text_to_image")
    params: dict[str, Any] = Field(
        default_factory=dict, description="as for .../sample or .../text-to-image"
    )


class JobError(BaseModel):
    code: str
    message: str
    field: str | None = None


class JobInfo(BaseModel):
    job_id: str
    model: str
    method: str
    state: str = Field(description="queued, running, done, failed or cancelled")
    position: int | None = Field(description="place in the model's queue while queued")
    step: int
    steps: int
    params: dict[str, Any]
    created_at: float
    preview: list[str] | None = Field(description="latest preview PNGs (base64)")
    seed: int | None = None
    images: list[str] | None = Field(default=None, description="when done: base64 PNGs")
    error: JobError | None = None


class ImagesRequest(StrictRequest):
    images: list[str] = Field(
        min_length=1, description="base64-encoded PNGs of the model's size: 1 to its max_n"
    )


class LogProbRequest(ImagesRequest):
    samples: int | None = Field(
        default=None, ge=1, description="importance samples for sampled bounds (default 1)"
    )
    seed: int | None = Field(
        default=None, ge=0, le=MAX_SEED, description="noise seed for sampled bounds"
    )


class LogProbResponse(BaseModel):
    model: str
    bits_per_dim: list[float]
    bound: str = Field(description='"exact", "elbo" or "importance_weighted"')
    samples: int
    seed: int | None


class SampleResponse(BaseModel):
    model: str
    seed: int
    images: list[str]


class EncodeResponse(BaseModel):
    model: str
    latents: list[Any] | None = Field(
        description="one array per image, for models with a single latent group"
    )
    groups: dict[str, list[Any]] = Field(description="every latent group: one array per image")


class ImagesResponse(BaseModel):
    model: str
    images: list[str]


class ImageInfo(BaseModel):
    height: int
    width: int
    channels: int


class ModelInfo(BaseModel):
    name: str
    version: str
    family: str
    description: str
    capabilities: list[str]
    image: ImageInfo
    latent_shape: list[int]
    likelihood: str | None
    pipeline: str = Field(
        description="how the model samples: latent_decoder, autoregressive_prior, diffusion"
    )
    sample_parameters: list[str] = Field(description="the fields POST .../sample accepts")
    sample_defaults: dict[str, float] = Field(
        default_factory=dict,
        description="this model's own values for sample fields a request leaves out "
        "(its default temperature)",
    )
    backend: str
    execution_providers: list[str]
    max_batch_size: int
    max_n: int
    versions: list[str]


class OpenAIModel(BaseModel):
    """A model as the OpenAI API lists it (``GET /v1/models`` of that API)."""

    id: str = Field(description="the model's name")
    object: Literal["model"] = "model"
    created: int = Field(description="Unix seconds of the model's export")
    owned_by: str = "latentserve"


class ModelList(BaseModel):
    models: list[ModelInfo]
    # The same models in the OpenAI API's list shape, so its SDKs can list them too.
    object: Literal["list"] = "list"
    data: list[OpenAIModel] = Field(description="the models as the OpenAI API lists them")


class RefusedVersion(BaseModel):
    model: str = Field(description="name@version")
    error: str = Field(description="why it is not served")


class ReloadResponse(BaseModel):
    loaded: list[str] = Field(description="name@version, served from now on")
    removed: list[str] = Field(description="no longer served; unloaded when their work ends")
    refused: list[RefusedVersion] = Field(description="on disk but not served")


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
