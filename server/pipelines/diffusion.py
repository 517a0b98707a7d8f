"""The diffusion pipeline: a numpy sampler per job, denoiser steps batched across jobs.

Each job keeps its own sampler state (``latentserve.server.schedulers``: stateless
samplers, immutable per-job state) and hands the model's ``StepEngine`` a trajectory, so
jobs at different timesteps, with different step counts, samplers and guidance share
one denoiser call per iteration. Classifier-free guidance puts a job's conditional and
unconditional rows in that same call and combines them here. All randomness — the
starting noise and every stochastic sampler's step noise — comes from the job's own
generator, drawn in a fixed order, so the same model, seed and parameters give the same
images whatever shares the batch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

import numpy as np
from latentserve.server.errors import InvalidArgument
from latentserve.server.jobs import Progress
from latentserve.server.params import SampleParams
from latentserve.server.pipelines.base import Contract, GraphPipeline
from latentserve.server.pipelines.noise import rng
from latentserve.server.pipelines.stepping import StepEngine
from latentserve.server.schedulers import SAMPLERS, NoiseSchedule, Sampler, make_sampler, result
from latentserve.server.schedulers.base import SamplerState
from pydantic import Field

from latentserve.manifest import Manifest

MAX_GUIDANCE = 30.0


class DiffusionParams(SampleParams):
    """Sampling parameters of a diffusion model; unset ones take the manifest's defaults."""

    kind: ClassVar[str] = "diffusion"

    steps: int | None = Field(default=None, description="denoiser steps (default: the model's)")
    sampler: str | None = Field(default=None, description="ddpm, ddim, dpmpp_2m or euler_a")
    eta: float = Field(default=0.0, description="DDIM noise (0 = deterministic, 1 = DDPM-like)")
    guidance_scale: float | None = Field(
        default=None, description="classifier-free guidance (conditional models)"
    )
    class_label: int | None = Field(
        default=None, description="class to draw (conditional models; omit for any class)"
    )
    preview_every: int = Field(default=0, description="send a preview every k steps (0: none)")


class DiffusionTrajectory:
    """One job's sampling loop, stepped by the engine."""

    def __init__(
        self,
        pipeline: DiffusionPipeline,
        params: DiffusionParams,
        sampler: Sampler,
        progress: Progress | None,
    ) -> None:
        self._pipeline = pipeline
        self._sampler = sampler
        self._schedule = pipeline.schedule
        self._rng = rng(params.resolved_seed)
        self.progress = progress
        self.steps = int(params.steps or 0)
        shape = (params.n, *pipeline.manifest.latent.shape)
        self.state: SamplerState = sampler.start(
            self._schedule, self.steps, self._rng.standard_normal(shape, dtype=np.float32)
        )
        self._preview_every = params.preview_every
        self._labels, self._guidance = pipeline.conditioning_rows(params)

    @property
    def done(self) -> bool:
        return self.state.done

    def inputs(self) -> dict[str, np.ndarray]:
        x, t = self._sampler.model_input(self._schedule, self.state)
        rows = {"sample": x.astype(np.float32), "timestep": t.astype(np.float32)}
        if self._labels is None:
            return rows
        if self._guidance is None:
            return rows | {"class_label": self._labels}
        null = np.full_like(self._labels, self._pipeline.null_label)
        return {
            "sample": np.concatenate([rows["sample"], rows["sample"]]),
            "timestep": np.concatenate([rows["timestep"], rows["timestep"]]),
            "class_label": np.concatenate([self._labels, null]),
        }

    def advance(self, outputs: dict[str, np.ndarray]) -> None:
        prediction = outputs["prediction"].astype(np.float64)
        if self._guidance is not None:
            conditional, unconditional = np.split(prediction, 2)
            prediction = unconditional + self._guidance * (conditional - unconditional)
        noise = None
        if self._sampler.needs_noise():
            noise = self._rng.standard_normal(self.state.x.shape)
        self.state = self._sampler.step(self._schedule, self.state, prediction, noise)
        if self.progress is None:
            return
        self.progress.step(self.state.index, self.steps)
        every = self._preview_every
        if every and self.state.index % every == 0 and not self.state.done:
            self.progress.preview(self.state.index, self._pipeline.to_images(self.state.denoised))


class DiffusionPipeline(GraphPipeline):
    """Sample by stepping a numpy sampler over the ``denoiser`` graph."""

    kind = "diffusion"
    params_cls = DiffusionParams
    needs = {**GraphPipeline.needs, "sample": ("denoiser",)}

    def __init__(self, manifest: Manifest, *args: Any, **kwargs: Any) -> None:
        super().__init__(manifest, *args, **kwargs)
        spec = manifest.scheduler
        assert spec is not None  # the manifest refuses a diffusion model without one
        self.spec = spec
        self.schedule = NoiseSchedule.from_config(
            beta_schedule=spec.beta_schedule,
            num_train_timesteps=spec.num_train_timesteps,
            beta_start=spec.beta_start,
            beta_end=spec.beta_end,
            prediction_type=spec.prediction_type,
            clip_range=spec.sample_range if spec.clip_sample else None,
        )
        self.conditioning = manifest.conditioning
        self.null_label = self.conditioning.null_label if self.conditioning else 0
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
        return {
            "denoiser": (denoiser_inputs, {"prediction"}),
            "decoder": ({"latent"}, {"image"}),
        }

    def queue_delay_ms(self, role: str, serving: Any) -> float:
        # The engine already gathers every running job into each denoiser call.
        return 0.0 if role == "denoiser" else serving.max_queue_delay_ms

    # -- parameters ------------------------------------------------------------------------

    def prepare(self, raw: Any) -> DiffusionParams:
        params = super().prepare(raw)
        assert isinstance(params, DiffusionParams)
        spec = self.spec
        sampler = params.sampler or spec.default_sampler
        steps = spec.default_steps if params.steps is None else params.steps
        limit = min(spec.num_train_timesteps, self.serving.max_steps)
        if not 1 <= steps <= limit:
            raise InvalidArgument("steps", f"must be between 1 and {limit}, got {steps}")
        if sampler not in SAMPLERS:
            known = ", ".join(sorted(SAMPLERS))
            raise InvalidArgument("sampler", f"unknown sampler {sampler!r}; known: {known}")
        try:
            make_sampler(sampler, params.eta)
        except ValueError as exc:
            raise InvalidArgument("eta", str(exc)) from None
        if params.preview_every < 0:
            raise InvalidArgument("preview_every", f"must be >= 0, got {params.preview_every}")
        self._check_conditioning(params)
        return params.model_copy(update={"steps": steps, "sampler": sampler})

    def _check_conditioning(self, params: DiffusionParams) -> None:
        cond = self.conditioning
        for field in ("class_label", "guidance_scale"):
            if cond is None and getattr(params, field) is not None:
                raise InvalidArgument(
                    field, f"model {self.label} is not class-conditional: it takes no {field}"
                )
        if cond is None:
            return
        label = params.class_label
        if label is not None and not 0 <= label < cond.num_classes:
            raise InvalidArgument(
                "class_label", f"must be between 0 and {cond.num_classes - 1}, got {label}"
            )
        scale = params.guidance_scale
        if scale is not None and not (np.isfinite(scale) and 0 <= scale <= MAX_GUIDANCE):
            raise InvalidArgument(
                "guidance_scale", f"must be between 0 and {MAX_GUIDANCE:g}, got {scale}"
            )

    def conditioning_rows(self, params: DiffusionParams) -> tuple[np.ndarray | None, float | None]:
        """(class labels per item or None, guidance scale if guided rows are needed)."""
        cond = self.conditioning
        if cond is None:
            return None, None
        if params.class_label is None:  # any class: the model's unconditional prediction
            return np.full(params.n, cond.null_label, dtype=np.int64), None
        scale = (
            cond.default_guidance_scale if params.guidance_scale is None else params.guidance_scale
        )
        labels = np.full(params.n, params.class_label, dtype=np.int64)
        return labels, (None if scale == 1.0 else float(scale))

    # -- sampling --------------------------------------------------------------------------

    async def sample(self, params: SampleParams, progress: Progress | None = None) -> np.ndarray:
        assert isinstance(params, DiffusionParams)
        sampler = make_sampler(str(params.sampler), params.eta)
        trajectory = DiffusionTrajectory(self, params, sampler, progress)
        await self.engine.run(trajectory)
        return await self.to_images(result(trajectory.state))

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
