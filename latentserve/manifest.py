"""The model manifest: the only thing the server knows about a model.

Exporters write it, the server reads it. One typed, versioned schema keeps the two sides
honest: a field the server needs and the exporter forgot fails validation at load time,
not at the first request.

Graph I/O contract of the ``latent_decoder`` pipeline (AE, VAE, GAN generators). Images at
the graph boundary are float32 NCHW in ``image.value_range``; every graph has a dynamic
``batch`` axis; graphs contain no random ops (noise is an input):

- ``encoder``: ``image`` (batch, C, H, W) -> ``latent`` (batch, *latent.shape), the
  posterior mean (VAE) or code (AE); a VAE also outputs ``logvar`` of the same shape.
- ``decoder``: ``latent`` (batch, *latent.shape) -> ``image`` (batch, C, H, W).
- ``sampler``: ``noise`` (batch, *latent.shape) drawn from the prior by the server and
  ``temperature`` (batch,) -> ``image``. Present only when the family has a prior.

Models whose encoder returns several tensors (a hierarchical VAE's groups, a flow's
multi-scale latents) list them in ``latent.groups``: the encoder outputs and the decoder
inputs are then one tensor per group, named as the group. The sampler still takes one
flat ``noise`` of ``latent.shape`` and splits it inside the graph. Flows use this same
pipeline: their sampler is the exact inverse, their encoder the exact forward pass.

- ``log_prob``: ``image`` (batch, C, H, W) on the 8-bit levels, and, for models whose
  likelihood is a bound estimated by sampling, ``noise`` (batch, samples, *dims) of
  standard normals -> ``bits_per_dim`` (batch,). ``likelihood`` says what one sample gives:
  ``elbo`` (an upper bound on the 8-bit code length: VAE, NVAE, dequantized flows, VQ
  models) or ``exact``; more samples give the importance-weighted bound.

Graph I/O contract of the ``autoregressive_prior`` pipeline (VQ-VAE, VQ-VAE-2). The
discrete code maps are listed in ``codes`` in sampling order:

- ``encoder``: ``image`` -> one int64 (batch, h, w) output per code map, named as it.
- ``decoder``: every code map (int64, named as in ``codes``) -> ``image``.
- a prior step graph per code map (role ``CodeMap.prior``): that code map plus the code
  maps it is conditioned on (``CodeMap.conditions``) -> ``logits`` (batch, K, h, w). The
  logits at a position depend only on codes before it in raster order, so the server
  samples a map position by position, calling the step graph once per position.
  A code map whose ``step`` is ``position`` has a cheaper step graph: it also takes
  ``position`` (batch,) int64, each item's raster index, and returns ``logits``
  (batch, K) at that position only (computing just the rows it can see).
- ``log_prob`` (optional): ``image`` -> ``bits_per_dim``.

Graph I/O contract of the ``diffusion`` pipeline (DDPM-style models; ``noise_schedule``
holds the noise schedule the denoiser was trained with, its ``alphas_cumprod`` written
out, ``latent.shape`` the shape of the sample it denoises):

- ``denoiser``: ``sample`` (batch, *latent.shape) x_t, ``timestep`` (batch,) float32 training
  timesteps, and for a class-conditional model ``class_label`` (batch,) int64 (the value
  ``conditioning.null_label`` means "no class", for classifier-free guidance) ->
  ``prediction`` (batch, *latent.shape): epsilon or v, per ``noise_schedule.prediction_type``.
  Every row has its own timestep, so rows of requests at different steps share one call.
- ``decoder`` (optional): ``latent`` -> ``image`` for models that denoise in an
  autoencoder's latent space; without it the sample is the image in
  ``noise_schedule.sample_range``.
- ``encoder`` (optional, latent diffusion): ``image`` -> ``latent`` (the posterior mean),
  for encode / reconstruct and img2img.

Graph I/O contract of the ``gan`` pipeline (GAN generators; ``generator`` says how many
style inputs the synthesis layers read, 0 for a generator without styles):

- ``sampler``: ``z`` (batch, *latent.shape) standard normals and ``truncation`` (batch,) ψ ->
  ``image``. A style-based generator (``generator.style_layers`` > 0) also takes
  ``mix_z`` (batch, *latent.shape), a second latent whose styles replace ``z``'s from
  style index ``mix_layer`` (batch,) int64 on (``style_layers``: no mixing), and
  ``layer_noise`` (batch, N), every synthesis layer's noise map flattened and
  concatenated in layer order. ψ pulls ``w`` towards its running mean
  (``w_avg + ψ (w - w_avg)``), or for a generator without styles ``z`` towards 0.

Text-to-image models (``text`` section) add:

- ``text_encoder``: ``input_ids`` and ``attention_mask`` (batch, text.max_tokens) int64 ->
  ``hidden_states`` (batch, text.max_tokens, text.hidden_size) float32.
- the denoiser takes ``encoder_hidden_states`` (batch, max_tokens, hidden_size) float32
  and ``encoder_attention_mask`` (batch, max_tokens) int64 besides ``sample`` and
  ``timestep``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from latentserve.noise_schedule import BetaSchedule, alphas_cumprod

# 2 added latent groups, code maps, likelihood and the log_prob/prior graph roles; 3 the
# diffusion pipeline (scheduler, conditioning) and assets, with pipeline kinds and graph
# roles checked against the registry below; 4 renamed ``scheduler`` to ``noise_schedule``
# and writes the schedule out (``alphas_cumprod``) instead of naming it. Versions 1 and 2
# are valid version 3 manifests without the new sections, and a version 3 ``scheduler``
# loads as the ``noise_schedule`` it names, so all four load. 5 added the latent's
# ``default_temperature`` (1.0 when absent, so every earlier version loads).
SCHEMA_VERSION = 5
MANIFEST_FILENAME = "manifest.json"

# The one place that lists what a manifest may name. A new pipeline kind or graph role is
# one line here (plus its pipeline in the server); nothing else enumerates them.
PIPELINE_KINDS = ("latent_decoder", "autoregressive_prior", "diffusion", "gan")
GRAPH_ROLES = (
    "encoder",
    "decoder",
    "sampler",
    "log_prob",
    "prior",
    "prior_top",
    "prior_bottom",
    "denoiser",
    "text_encoder",
)
CAPABILITIES = ("sample", "encode", "reconstruct", "log_prob", "text_to_image", "interpolate")


def _registered(kind: str, known: tuple[str, ...]) -> AfterValidator:
    def check(value: str) -> str:
        if value not in known:
            raise ValueError(f"unknown {kind} {value!r}; known: {', '.join(known)}")
        return value

    return AfterValidator(check)


PipelineKind = Annotated[str, _registered("pipeline kind", PIPELINE_KINDS)]
GraphRole = Annotated[str, _registered("graph role", GRAPH_ROLES)]
Capability = Annotated[str, _registered("capability", CAPABILITIES)]
GraphFormat = Literal["onnx", "torchscript"]
LikelihoodKind = Literal["exact", "elbo"]
DType = Literal["float32", "float16", "int64", "int32"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    """One graph input or output. A string dimension (e.g. ``"batch"``) is dynamic."""

    name: str
    dtype: DType
    shape: list[int | str]


class GraphFile(_Strict):
    path: str  # relative to the version folder
    sha256: str


class GraphSpec(_Strict):
    """One exported graph (same I/O in every format it was exported to)."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    files: dict[GraphFormat, GraphFile]


class ImageSpec(_Strict):
    """How images look at the graph boundary: NCHW float in ``value_range``."""

    height: int = Field(gt=0)
    width: int = Field(gt=0)
    channels: Literal[1, 3]
    value_range: tuple[float, float] = (0.0, 1.0)


class LatentGroup(_Strict):
    """One tensor ``encode`` returns per image (and the decoder takes back)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    shape: list[int]
    dtype: Literal["float32", "int64"] = "float32"


class LatentSpec(_Strict):
    """The sampler's per-item noise shape (no batch dim), its prior, and what encode returns.

    ``groups`` empty means one float32 group called ``latent`` of ``shape`` (AE, VAE).
    """

    shape: list[int]
    prior: Literal["standard_normal", "autoregressive"] = "standard_normal"
    groups: list[LatentGroup] = Field(default_factory=list)
    # The prior temperature of a sample request that names none (the training config's
    # ``[sample] temperature``).
    default_temperature: float = Field(default=1.0, gt=0, le=100)

    def encoded(self) -> list[LatentGroup]:
        return self.groups or [LatentGroup(name="latent", shape=self.shape)]


class CodeMap(_Strict):
    """A discrete code map of an autoregressive-prior model, with the graph that samples it."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    codebook_size: int = Field(gt=1)
    prior: GraphRole
    conditions: list[str] = Field(default_factory=list)
    # "map": the prior graph returns every position's logits; "position": it also takes each
    # item's ``position`` and returns the logits there only (see the module docstring)
    step: Literal["map", "position"] = "map"


class _HowToSample(_Strict):
    """What a diffusion model's samplers need besides the schedule itself.

    ``sample_range`` is the value range of clean samples (pixels mapped to [-1, 1] for pixel
    diffusion): x0 estimates are clipped to it, and without a ``decoder`` graph it maps
    linearly onto ``image.value_range``. ``latent_scale`` divides a sample before the
    decoder for latent diffusion (the autoencoder's latents were multiplied by it).
    """

    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"
    sample_range: tuple[float, float] = (-1.0, 1.0)
    clip_sample: bool = True
    latent_scale: float = Field(default=1.0, gt=0)
    default_sampler: str = "ddim"
    default_steps: int = Field(default=50, gt=0)


class NoiseScheduleSpec(_HowToSample):
    """The noise schedule a denoiser was trained with, written out: the server's samplers
    step through ``alphas_cumprod`` (ᾱ_t for each training timestep t, decreasing in
    (0, 1)) and never recompute it."""

    alphas_cumprod: list[float] = Field(min_length=2)

    @model_validator(mode="after")
    def _a_decreasing_schedule(self) -> NoiseScheduleSpec:
        ab = self.alphas_cumprod
        if not all(0.0 < a < 1.0 for a in ab):
            raise ValueError("alphas_cumprod must lie in (0, 1)")
        if any(b >= a for a, b in zip(ab, ab[1:], strict=False)):
            raise ValueError("alphas_cumprod must decrease with t")
        return self

    @property
    def num_train_timesteps(self) -> int:
        return len(self.alphas_cumprod)


class SchemaThreeScheduler(_HowToSample):
    """Schema 3's ``scheduler`` section: the schedule named, not written out. Read only to
    load such manifests, as the ``noise_schedule`` its formula gives."""

    beta_schedule: BetaSchedule
    num_train_timesteps: int = Field(gt=1)
    beta_start: float = Field(default=1e-4, gt=0)
    beta_end: float = Field(default=0.02, gt=0, lt=1)

    def noise_schedule(self) -> NoiseScheduleSpec:
        schedule = alphas_cumprod(
            self.beta_schedule, self.num_train_timesteps, self.beta_start, self.beta_end
        )
        how = {name: getattr(self, name) for name in _HowToSample.model_fields}
        return NoiseScheduleSpec(alphas_cumprod=schedule.tolist(), **how)


class ClassConditioning(_Strict):
    """Class-conditional denoisers: labels 0..num_classes-1, ``null_label`` for none (CFG)."""

    num_classes: int = Field(gt=1)
    null_label: int = Field(ge=0)
    default_guidance_scale: float = Field(default=1.0, ge=0)
    labels: list[str] = Field(default_factory=list)  # human names, e.g. "0".."9"


class TextConditioning(_Strict):
    """Text-conditional denoisers (text-to-image): a frozen text encoder's token states.

    The server tokenizes a prompt with the ``tokenizer`` asset (a ``tokenizers`` JSON file)
    into ``max_tokens`` ids (padded; a longer prompt is refused), runs the ``text_encoder``
    graph, and feeds its states to the denoiser. The empty prompt is the unconditional
    input of classifier-free guidance (what conditioning dropout trained on).
    """

    tokenizer: str = "tokenizer"  # the name of the asset
    max_tokens: int = Field(gt=1)
    hidden_size: int = Field(gt=0)
    default_guidance_scale: float = Field(default=5.0, ge=0)


class GeneratorSpec(_Strict):
    """A GAN generator (the ``gan`` pipeline): the number of style inputs (``w``) its
    synthesis layers read, which bounds ``mix_layer``; 0 for a generator without styles."""

    style_layers: int = Field(default=0, ge=0)


class AssetFile(_Strict):
    """A file other than a graph that serving needs (a tokenizer), checked like graphs."""

    path: str
    sha256: str


class ServingDefaults(_Strict):
    """Batching defaults; the server's settings may override them per model."""

    max_batch_size: int = Field(default=32, gt=0)
    max_queue_delay_ms: float = Field(default=2.0, ge=0)
    max_queue_size: int = Field(default=1024, gt=0)
    max_n: int = Field(default=64, gt=0)


class Provenance(_Strict):
    config: dict
    dataset: str
    git_commit: str | None = None
    created_at: str
    latentserve_version: str
    metrics: dict[str, float] = Field(default_factory=dict)


class Manifest(_Strict):
    schema_version: Literal[1, 2, 3, 4, 5] = SCHEMA_VERSION
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    version: str = Field(pattern=r"^[0-9]+$")
    family: str
    description: str = ""
    pipeline: PipelineKind
    capabilities: list[Capability]
    image: ImageSpec
    latent: LatentSpec
    codes: list[CodeMap] = Field(default_factory=list)
    likelihood: LikelihoodKind | None = None
    graphs: dict[GraphRole, GraphSpec]
    noise_schedule: NoiseScheduleSpec | None = None
    conditioning: ClassConditioning | None = None
    text: TextConditioning | None = None
    generator: GeneratorSpec | None = None
    assets: dict[str, AssetFile] = Field(default_factory=dict)
    serving: ServingDefaults = ServingDefaults()
    provenance: Provenance

    @model_validator(mode="before")
    @classmethod
    def _schema_three_scheduler(cls, data: Any) -> Any:
        """Up to schema 3 the schedule was named (``scheduler``); from 4 it is written out
        (``noise_schedule``). A schema 3 ``scheduler`` loads as the ``noise_schedule`` it
        names; ``schema_version`` still says what the file was."""
        if not isinstance(data, dict) or "scheduler" not in data:
            return data
        if data.get("schema_version", SCHEMA_VERSION) not in (1, 2, 3):
            raise ValueError("scheduler is a schema 3 section: from schema 4 on, noise_schedule")
        if "noise_schedule" in data:
            raise ValueError("give scheduler (schema 3) or noise_schedule (schema 4), not both")
        data = dict(data)
        scheduler = data.pop("scheduler")
        if scheduler is not None:
            data["noise_schedule"] = SchemaThreeScheduler.model_validate(scheduler).noise_schedule()
        return data

    @model_validator(mode="after")
    def _diffusion_has_a_schedule(self) -> Manifest:
        if (self.pipeline == "diffusion") != (self.noise_schedule is not None):
            raise ValueError("a noise_schedule section is required for, and only for, diffusion")
        return self

    @model_validator(mode="after")
    def _gan_has_a_generator(self) -> Manifest:
        if (self.pipeline == "gan") != (self.generator is not None):
            raise ValueError("a generator section is required for, and only for, gan")
        return self

    @classmethod
    def load(cls, version_dir: Path) -> Manifest:
        return cls.model_validate_json((version_dir / MANIFEST_FILENAME).read_text())

    def save(self, version_dir: Path) -> Path:
        path = version_dir / MANIFEST_FILENAME
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n")
        return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
