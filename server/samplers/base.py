"""What every sampler shares: the per-job state and the step protocol around it.

A sampler is a frozen, stateless object; all that changes during one generation lives in
an immutable :class:`SamplerState` that the job holds. That is what lets the server put
rows of many jobs - at different steps, step counts and samplers - into one denoiser call:
each job computes its rows with :meth:`Sampler.model_input`, gets its slice of the output
back, and calls :meth:`Sampler.step`.

``state.x`` is always the variance-preserving x_t at the current trained timestep, whatever
space a sampler integrates in, so the denoiser input, the previews and the result are read
the same way for every sampler.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from latentserve.server.samplers.schedule import NoiseSchedule


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True, eq=False)
class SamplerState:
    """One job's progress; stepping returns a new state and never changes this one."""

    x: np.ndarray  # VP x_t at ``t`` (n, *shape) float32; the clean sample once done
    timesteps: np.ndarray  # the plan: trained timesteps to visit, descending
    index: int = 0  # steps done
    denoised: np.ndarray | None = None  # latest x0 estimate, for previews
    #: Earlier x0 estimates, oldest first, for multistep samplers (``history_length``).
    history: tuple[np.ndarray, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "x", _read_only(self.x))
        object.__setattr__(self, "timesteps", _read_only(self.timesteps))
        if self.denoised is not None:
            object.__setattr__(self, "denoised", _read_only(self.denoised))
        object.__setattr__(self, "history", tuple(_read_only(h) for h in self.history))

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    @property
    def done(self) -> bool:
        return self.index >= self.steps

    @property
    def t(self) -> int:
        """The trained timestep the next model call is made at."""
        if self.done:
            raise ValueError("sampling is done; there is no next timestep")
        return int(self.timesteps[self.index])

    @property
    def t_next(self) -> int | None:
        """The timestep the next step lands on; None for the final jump to clean data."""
        following = self.index + 1
        return int(self.timesteps[following]) if following < self.steps else None


def result(state: SamplerState) -> np.ndarray:
    """The generated sample: after the final step x_t is at ``ab = 1``, i.e. x0 itself."""
    if not state.done:
        raise ValueError(f"sampling is not done ({state.index}/{state.steps} steps)")
    return state.x


class Sampler(ABC):
    """A sampling rule. Subclasses are frozen dataclasses that define ``name``,
    :meth:`needs_noise` and :meth:`update`; the bookkeeping around them lives here."""

    name: ClassVar[str]
    #: How many earlier x0 estimates :meth:`update` reads from ``state.history``.
    history_length: ClassVar[int] = 0

    @classmethod
    def create(cls, eta: float = 0.0) -> Sampler:
        """The sampler for a request; only samplers with an ``eta`` accept a non-zero one."""
        if eta != 0.0:
            raise ValueError(f"sampler {cls.name!r} has no eta parameter (got eta={eta})")
        return cls()

    @abstractmethod
    def needs_noise(self) -> bool:
        """Whether :meth:`step` consumes fresh standard-normal noise shaped like ``x``."""

    @abstractmethod
    def update(
        self,
        schedule: NoiseSchedule,
        state: SamplerState,
        x0: np.ndarray,
        eps: np.ndarray,
        noise: np.ndarray | None,
    ) -> np.ndarray:
        """The VP x at ``state.t_next`` (clean data when None) from the model's estimates."""

    def start(self, schedule: NoiseSchedule, steps: int, noise: np.ndarray) -> SamplerState:
        """The state before the first step: x_T is the standard-normal ``noise`` (n, *shape)."""
        return SamplerState(x=noise.astype(np.float32), timesteps=schedule.timesteps(steps))

    def start_from(
        self,
        schedule: NoiseSchedule,
        steps: int,
        strength: float,
        x0: np.ndarray,
        noise: np.ndarray,
    ) -> SamplerState:
        """img2img: ``x0`` noised to where ``strength`` of the ``steps`` remain, then the
        last ``ceil(strength * steps)`` of the plan (SDEdit). Strength 1 is plain sampling
        from noise, small strength stays close to ``x0``."""
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        plan = schedule.timesteps(steps)
        remaining = plan[steps - max(1, int(np.ceil(strength * steps))) :]
        ab = schedule.alpha_bar(int(remaining[0]))
        x = np.sqrt(ab) * x0 + np.sqrt(1.0 - ab) * noise
        return SamplerState(x=x.astype(np.float32), timesteps=remaining)

    def model_input(
        self, schedule: NoiseSchedule, state: SamplerState
    ) -> tuple[np.ndarray, np.ndarray]:
        """The denoiser's ``sample`` and per-row ``timestep`` rows for this job."""
        return state.x, np.full(len(state.x), state.t, dtype=np.float32)

    def step(
        self,
        schedule: NoiseSchedule,
        state: SamplerState,
        model_output: np.ndarray,
        noise: np.ndarray | None = None,
    ) -> SamplerState:
        """The state one step on, from this job's rows of the denoiser output."""
        if model_output.shape != state.x.shape:
            raise ValueError(f"model output {model_output.shape} != sample {state.x.shape}")
        if self.needs_noise() != (noise is not None):
            wanted = "needs" if self.needs_noise() else "takes no"
            raise ValueError(f"sampler {self.name!r} {wanted} noise")
        if noise is not None and noise.shape != state.x.shape:
            raise ValueError(f"noise {noise.shape} != sample {state.x.shape}")
        x0, eps = schedule.x0_and_eps(state.x, state.t, model_output)
        x = self.update(schedule, state, x0, eps, noise)
        denoised = x0.astype(np.float32)
        kept = (*state.history, denoised)[-self.history_length :] if self.history_length else ()
        return dataclasses.replace(
            state, x=x.astype(np.float32), index=state.index + 1, denoised=denoised, history=kept
        )
