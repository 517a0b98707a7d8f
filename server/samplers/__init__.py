"""Numpy diffusion samplers as pure functions over per-job state.

A new sampler is one module defining a :class:`Sampler` subclass, plus one entry in the
tuple below. The registry is closed: request strings only ever select from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from latentserve.server.samplers.base import Sampler, SamplerState, result
from latentserve.server.samplers.ddim import DDIMSampler
from latentserve.server.samplers.ddpm import DDPMSampler
from latentserve.server.samplers.dpmpp_2m import DPMSolverPP2MSampler
from latentserve.server.samplers.euler_a import EulerAncestralSampler
from latentserve.server.samplers.schedule import NoiseSchedule


def _registry(*classes: type[Sampler]) -> Mapping[str, type[Sampler]]:
    registry: dict[str, type[Sampler]] = {}
    for cls in classes:
        if cls.name in registry:
            raise ValueError(f"sampler {cls.name!r} is registered twice")
        registry[cls.name] = cls
    return MappingProxyType(registry)


SAMPLERS = _registry(DDPMSampler, DDIMSampler, DPMSolverPP2MSampler, EulerAncestralSampler)


def make_sampler(name: str, eta: float = 0.0) -> Sampler:
    """The sampler a request names; ValueError (a 422 upstream) for unknown names or eta."""
    try:
        cls = SAMPLERS[name]
    except KeyError:
        known = ", ".join(sorted(SAMPLERS))
        raise ValueError(f"unknown sampler {name!r}; known: {known}") from None
    return cls.create(eta)


__all__ = [
    "SAMPLERS",
    "NoiseSchedule",
    "Sampler",
    "SamplerState",
    "make_sampler",
    "result",
]
