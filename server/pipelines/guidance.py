"""Classifier-free guidance: the extra denoiser inputs of one job and how its rows combine.

A job's rows carry their conditioning (class labels, or a prompt's token states and mask)
as extra denoiser inputs. Guided, the job sends its conditional rows and then the same
samples with the unconditional inputs (null label, empty or negative prompt) in the same
call, and the two predictions are combined as ``uncond + scale * (cond - uncond)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Guidance:
    conditional: Arrays  # extra inputs, one row per item
    unconditional: Arrays | None = None  # set when guided
    scale: float = 1.0

    @property
    def guided(self) -> bool:
        return self.unconditional is not None

    def rows(self, base: Arrays) -> Arrays:
        """The denoiser rows for ``base`` (``sample``, ``timestep``), guided or not."""
        if self.unconditional is None:
            return base | self.conditional
        doubled = {name: np.concatenate([value, value]) for name, value in base.items()}
        extra = {
            name: np.concatenate([value, self.unconditional[name]])
            for name, value in self.conditional.items()
        }
        return doubled | extra

    def combine(self, prediction: np.ndarray) -> np.ndarray:
        if self.unconditional is None:
            return prediction
        conditional, unconditional = np.split(prediction, 2)
        return unconditional + self.scale * (conditional - unconditional)


def guide(conditional: Arrays, unconditional: Arrays, scale: float) -> Guidance:
    """Guidance at ``scale``; a scale of 1 is the conditional prediction alone (no extra
    rows), 0 the unconditional one alone."""
    if scale == 1.0:
        return Guidance(conditional)
    if scale == 0.0:
        return Guidance(unconditional)
    return Guidance(conditional, unconditional, scale)
