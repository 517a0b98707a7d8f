"""An exponential moving average of a module's weights, kept as a shadow module.

The shadow is a submodule, so its weights are part of the model's ``state_dict``: they are
checkpointed (safetensors) and restored with everything else, which keeps resume exact,
and an exporter can wrap the shadow like any network. Its parameters never get gradients.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """``shadow = d * shadow + (1 - d) * source`` after every optimiser step.

    The decay warms up as ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so a
    short run's average is not dominated by the random initial weights.
    """

    def __init__(self, source: nn.Module, decay: float) -> None:
        super().__init__()
        self.decay = decay
        self.shadow = copy.deepcopy(source).requires_grad_(False)
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))

    def current_decay(self) -> float:
        n = int(self.updates)
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, source: nn.Module) -> None:
        weight = 1.0 - self.current_decay()
        for average, value in zip(self.shadow.parameters(), source.parameters(), strict=True):
            average.lerp_(value, weight)
        for average, value in zip(self.shadow.buffers(), source.buffers(), strict=True):
            average.copy_(value)
        self.updates += 1
