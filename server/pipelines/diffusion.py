"""The diffusion pipeline: a numpy sampler per job, denoiser steps batched across jobs.

Each job keeps its own sampler state (``latentserve.server.samplers``: stateless
samplers, immutable per-job state) and hands the model's ``StepEngine`` a trajectory, so
jobs at different timesteps, with different step counts, samplers, guidance and prompts
share one denoiser call per iteration. Classifier-free guidance puts a job's conditional
and unconditional rows in that same call (``guidance.py``). All randomness — the starting
noise and every stochastic sampler's step noise — comes from the job's own generator, drawn
in a fixed order, so the same model, seed and parameters give the same images whatever
shares the batch.

One pipeline serves pixel diffusion (the sample is the image) and latent diffusion (a
``decoder`` graph turns the sample into the image, an ``encoder`` starts img2img), with
no conditioning, class labels, or a prompt encoded by a frozen text encoder; with an image
and a mask, text-to-image inpaints (``inpainting.py``).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import numpy as np
from latentserve.server import codecs, tracing
from latentserve.server.engine.jobs import Progress
from latentserve.server.engine.stepping import StepEngine
from latentserve.server.errors import InvalidArgument, Unsupported, shown
from latentserve.server.params import SampleParams
from latentserve.server.pipelines.base import Contract, GraphPipeline
from latentserve.server.pipelines.diffusion_params import (
    MAX_GUIDANCE,
    DenoisingParams,
    DiffusionInterpolateParams,
    DiffusionParams,
    TextToImageParams,
)
from latentserve.server.pipelines.guidance import Guidance, guide
from latentserve.server.pipelines.inpainting import KeptRegion, latent_keep_mask
from latentserve.server.pipelines.interpolation import slerp
from latentserve.server.pipelines.noise import rng
from latentserve.server.pipelines.text import PromptEncoder
from latentserve.server.samplers import SAMPLERS, NoiseSchedule, Sampler, make_sampler, result
from latentserve.server.samplers.base import SamplerState

from latentserve.manifest import Manifest

TEXT_INPUTS = {"encoder_hidden_states", "encoder_attention_mask"}


class DiffusionTrajectory:
    """One job's sampling loop, stepped by the engine."""

    def __init__(
        self,
        pipeline: DiffusionPipeline,
        sampler: Sampler,
        state: SamplerState,
        guidance: Guidance,
        generator: np.random.Generator,
        progress: Progress | None,
        preview_every: int,
        kept: KeptRegion | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._kept = kept
        self._sampler = sampler
        self._schedule = pipeline.schedule
        self._guidance = guidance
        self._rng = generator
        self.state = state
        self.steps = state.steps
        self.progress = progress
        self._preview_every = preview_every

    @property
    def done(self) -> bool:
        return self.state.done

    def inputs(self) -> dict[str, np.ndarray]:
        x, t = self._sampler.model_input(self._schedule, self.state)
        base = {"sample": x.astype(np.float32), "timestep": t.astype(np.float32)}
        return self._guidance.rows(base)

    def advance(self, outputs: dict[str, np.ndarray]) -> None:
        prediction = self._guidance.combine(outputs["prediction"].astype(np.float64))
        noise = None
        if self._sampler.needs_noise():
            noise = self._rng.standard_normal(self.state.x.shape)
        self.state = self._sampler.step(self._schedule, self.state, prediction, noise)
        if self._kept is not None:
            self.state = self._kept.hold(self.state)
        if self.progress is None:
            return
        self.progress.step(self.state.index, self.steps)
        every = self._preview_every
        if every and self.state.index % every == 0 and not self.state.done:
            denoised = self.state.denoised
            assert denoised is not None  # set by every step
            if self._kept is not None:
                denoised = self._kept.over(denoised)
            self.progress.preview(self.state.index, self._pipeline.to_images(denoised))


class DiffusionPipeline(GraphPipeline):
    """Sample (and text-to-image) by stepping a numpy sampler over the ``denoiser`` graph."""

    kind = "diffusion"
    params_for = {
        "sample": DiffusionParams,
        "text_to_image": TextToImageParams,
        "interpolate": DiffusionInterpolateParams,
    }
    needs = {
        **GraphPipeline.needs,
        "sample": ("denoiser",),
        "interpolate": ("denoiser",),
        "text_to_image": ("denoiser", "text_encoder"),
    }

    def __init__(self, manifest: Manifest, *args: Any, **kwargs: Any) -> None:
        super().__init__(manifest, *args, **kwargs)
        spec = manifest.noise_schedule
        assert spec is not None  # the manifest refuses a diffusion model without one
        self.spec = spec
        self.schedule = NoiseSchedule(
            np.asarray(spec.alphas_cumprod, dtype=np.float64),
            prediction_type=spec.prediction_type,
            clip_range=spec.sample_range if spec.clip_sample else None,
        )
        self.prompts: PromptEncoder | None = None
        if manifest.text is not None:
            self.prompts = PromptEncoder.from_manifest(
                manifest,
                self.version_dir,
                functools.partial(self.run, "text_encoder"),
                cache_size=self.serving.text_cache_size,
                metrics=self.metrics,
            )
        self.engine = StepEngine(
            lambda inputs: self.run("denoiser", inputs),
            model=self.label,
            max_running=self.serving.max_running_jobs,
            batching=self.serving.step_batching,
            metrics=self.metrics,
        )

    def contract(self, manifest: Manifest) -> Contract:
        denoiser_inputs = {"sample", "timestep"}
        if manifest.conditioning is not None:
            denoiser_inputs.add("class_label")
        if manifest.text is not None:
            denoiser_inputs |= TEXT_INPUTS
        return {
            "denoiser": (denoiser_inputs, {"prediction"}),
            "decoder": ({"latent"}, {"image"}),
            "encoder": ({"image"}, {"latent"}),
            "text_encoder": ({"input_ids", "attention_mask"}, {"hidden_states"}),
        }

    def queue_delay_ms(self, role: str, serving: Any) -> float:
        # The engine already gathers every running job into each denoiser call.
        return 0.0 if role == "denoiser" else serving.max_queue_delay_ms

    def balanced(self, role: str) -> bool:
        # An iteration waits for its slowest part: split it evenly across the batch slots.
        return role == "denoiser"

    # -- parameters ------------------------------------------------------------------------

    def prepare(self, raw: Mapping[str, Any], method: str = "sample") -> Any:
        params = super().prepare(raw, method)
        if isinstance(params, DiffusionInterpolateParams):
            self._checked(self._frame_params(params))
            return params
        return self._checked(params)

    def _checked(self, params: DenoisingParams) -> DenoisingParams:
        """Sampler settings within the model's limits, its defaults filled in."""
        spec = self.spec
        sampler = params.sampler or spec.default_sampler
        steps = spec.default_steps if params.steps is None else params.steps
        limit = min(spec.num_train_timesteps, self.serving.max_steps)
        if not 1 <= steps <= limit:
            raise InvalidArgument("steps", f"must be between 1 and {limit}, got {shown(steps)}")
        if sampler not in SAMPLERS:
            known = ", ".join(sorted(SAMPLERS))
            raise InvalidArgument("sampler", f"unknown sampler {shown(sampler)!r}; known: {known}")
        try:
            make_sampler(sampler, params.eta)
        except ValueError as exc:
            raise InvalidArgument("eta", str(exc)) from None
        if params.preview_every < 0:
            raise InvalidArgument(
                "preview_every", f"must be >= 0, got {shown(params.preview_every)}"
            )
        scale = params.guidance_scale
        if scale is not None and not (np.isfinite(scale) and 0 <= scale <= MAX_GUIDANCE):
            raise InvalidArgument(
                "guidance_scale", f"must be between 0 and {MAX_GUIDANCE:g}, got {scale}"
            )
        if isinstance(params, TextToImageParams):
            self._check_text(params)
        else:
            assert isinstance(params, DiffusionParams)
            self._check_class(params)
        return params.model_copy(update={"steps": steps, "sampler": sampler})

    def _check_class(self, params: DiffusionParams) -> None:
        cond = self.manifest.conditioning
        for field in ("class_label", "guidance_scale"):
            if cond is None and getattr(params, field) is not None:
                raise InvalidArgument(
                    field, f"model {self.label} is not class-conditional: it takes no {field}"
                )
        label = params.class_label
        if cond is not None and label is not None and not 0 <= label < cond.num_classes:
            raise InvalidArgument(
                "class_label", f"must be between 0 and {cond.num_classes - 1}, got {shown(label)}"
            )

    def _check_text(self, params: TextToImageParams) -> None:
        assert self.prompts is not None  # text_to_image requires the text_encoder graph
        self.prompts.encode([params.prompt], "prompt")
        self.prompts.encode([params.negative_prompt], "negative_prompt")
        if params.image is None:
            if params.strength is not None:
                raise InvalidArgument("strength", "only applies with an image (img2img)")
            if params.mask is not None:
                raise InvalidArgument("mask", "only applies with an image (inpainting)")
            return
        if "encoder" not in self.manifest.graphs:
            raise Unsupported(f"model {self.label} has no encoder: it cannot start from an image")
        strength = _strength(params)
        if not (np.isfinite(strength) and 0 < strength <= 1):
            raise InvalidArgument("strength", f"must be in (0, 1], got {strength}")
        self._decode_image(params.image)
        if params.mask is not None:
            self._keep_mask(params.mask)

    def _decode_image(self, png: bytes) -> np.ndarray:
        spec, limit = self.manifest.image, self.serving.max_image_pixels
        return codecs.pngs_to_batch([png], spec, limit, fields=["image"])

    def _keep_mask(self, png: bytes) -> np.ndarray:
        """The mask's kept pixels at the sample's resolution (``inpainting.py``)."""
        spec, limit = self.manifest.image, self.serving.max_image_pixels
        keep = codecs.decode_mask(png, "mask", spec, limit)
        return latent_keep_mask(keep, tuple(self.manifest.latent.shape))

    # -- sampling --------------------------------------------------------------------------

    async def sample(self, params: SampleParams, progress: Progress | None = None) -> np.ndarray:
        assert isinstance(params, DenoisingParams)
        generator = rng(params.resolved_seed)
        shape = (params.n, *self.manifest.latent.shape)
        noise = generator.standard_normal(shape, dtype=np.float32)
        return await self._denoise(params, noise, generator, progress)

    def _frame_params(self, params: DiffusionInterpolateParams) -> DiffusionParams:
        """The ``sample`` parameters that render interpolation frames: deterministic DDIM."""
        sample = params.sample_params(DiffusionParams)
        return sample.model_copy(update={"sampler": "ddim", "eta": 0.0})

    async def interpolate(
        self, params: DiffusionInterpolateParams, chunk: int
    ) -> AsyncIterator[tuple[int, np.ndarray]]:
        """Slerp the starting noise of the two seeds, then denoise every frame with DDIM
        (eta = 0, so the noise alone decides each image): all frames finish together."""
        sample = self._checked(self._frame_params(params))
        shape = (1, *self.manifest.latent.shape)
        seed_a, seed_b = params.seeds
        ends = [rng(seed).standard_normal(shape, dtype=np.float32)[0] for seed in (seed_a, seed_b)]
        noise = slerp(*ends, params.frames)
        images = await self._denoise(sample, noise, rng(seed_a), None)
        for offset in range(0, params.frames, chunk):
            yield offset, images[offset : offset + chunk]

    async def _denoise(
        self,
        params: DenoisingParams,
        noise: np.ndarray,
        generator: np.random.Generator,
        progress: Progress | None,
    ) -> np.ndarray:
        """Images from starting ``noise`` (one row per image); ``generator`` draws any
        noise a stochastic sampler needs on the way."""
        sampler = make_sampler(str(params.sampler), params.eta)
        steps = int(params.steps or self.spec.default_steps)
        kept: KeptRegion | None = None
        if isinstance(params, TextToImageParams):
            with self._stage("text_encode"):
                guidance = await self._text_guidance(params)
            if params.image is not None:
                with self._stage("image_encode"):
                    x0 = await self._encode_image(params.image, params.n)
                state = sampler.start_from(self.schedule, steps, _strength(params), x0, noise)
                if params.mask is not None:
                    kept = KeptRegion(self.schedule, x0, noise, self._keep_mask(params.mask))
                    state = kept.hold(state)
            else:
                state = sampler.start(self.schedule, steps, noise)
        else:
            assert isinstance(params, DiffusionParams)
            guidance = self._class_guidance(params)
            state = sampler.start(self.schedule, steps, noise)
        trajectory = DiffusionTrajectory(
            self, sampler, state, guidance, generator, progress, params.preview_every, kept
        )
        with self._stage("denoise", {"latentserve.steps": trajectory.steps}):
            await self.engine.run(trajectory)
        with self._stage("decode"):
            return await self.to_images(result(trajectory.state))

    @contextlib.contextmanager
    def _stage(self, stage: str, attributes: dict[str, Any] | None = None) -> Iterator[None]:
        """Time one stage of a job into ``latentserve_job_stage_seconds`` if it completes
        (a failed or cancelled stage is not a latency), traced as a span of the job."""
        start = time.perf_counter()
        with tracing.span(stage, attributes):
            yield
        if self.metrics is not None:
            self.metrics.job_stage.labels(self.label, stage).observe(time.perf_counter() - start)

    def _class_guidance(self, params: DiffusionParams) -> Guidance:
        cond = self.manifest.conditioning
        if cond is None:
            return Guidance({})
        null = {"class_label": np.full(params.n, cond.null_label, dtype=np.int64)}
        if params.class_label is None:  # any class: the model's unconditional prediction
            return Guidance(null)
        labels = {"class_label": np.full(params.n, params.class_label, dtype=np.int64)}
        scale = (
            cond.default_guidance_scale if params.guidance_scale is None else params.guidance_scale
        )
        return guide(labels, null, float(scale))

    async def _text_guidance(self, params: TextToImageParams) -> Guidance:
        assert self.prompts is not None and self.manifest.text is not None
        states, masks = await self.prompts.embed([params.prompt, params.negative_prompt])

        def rows(i: int) -> dict[str, np.ndarray]:
            return {
                "encoder_hidden_states": np.repeat(states[i : i + 1], params.n, axis=0),
                "encoder_attention_mask": np.repeat(masks[i : i + 1], params.n, axis=0),
            }

        default = self.manifest.text.default_guidance_scale
        scale = default if params.guidance_scale is None else params.guidance_scale
        return guide(rows(0), rows(1), float(scale))

    async def _encode_image(self, png: bytes, n: int) -> np.ndarray:
        image = self._decode_image(png)
        latent = (await self.run("encoder", {"image": image}))["latent"]
        return np.repeat(latent * self.spec.latent_scale, n, axis=0)

    async def sample_stream(
        self, params: SampleParams, chunk: int
    ) -> AsyncIterator[tuple[int, np.ndarray]]:
        """A diffusion job's images all finish at its last step: one chunk."""
        yield 0, await self.sample(params)

    async def to_images(self, samples: np.ndarray) -> np.ndarray:
        """Clean samples -> images in the manifest's value range (through the decoder for
        latent diffusion)."""
        if "decoder" in self.manifest.graphs:
            latent = (samples / self.spec.latent_scale).astype(np.float32)
            return (await self.run("decoder", {"latent": latent}))["image"]
        low, high = self.spec.sample_range
        out_low, out_high = self.manifest.image.value_range
        unit = (np.clip(samples, low, high) - low) / (high - low)
        return (out_low + unit * (out_high - out_low)).astype(np.float32)

    async def close(self) -> None:
        await self.engine.close()
        await super().close()


def _strength(params: TextToImageParams) -> float:
    """How much of the starting image is redrawn: by default most of it for img2img, and
    all of the masked area for inpainting (the rest is held by the mask)."""
    if params.strength is not None:
        return params.strength
    return 1.0 if params.mask is not None else 0.8
