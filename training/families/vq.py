"""Vector quantization with an EMA codebook (van den Oord et al. 2017, appendix A.1).

The codebook is not learned by gradient descent: each code moves towards the running
mean of the encoder outputs assigned to it (exponential moving averages of counts and
sums, with Laplace-smoothed counts so a rarely used code is not divided by ~0). That
is steadier than a codebook loss and leaves only the commitment term, which keeps the
encoder near its codes. Gradients cross the non-differentiable lookup with the
straight-through estimator.

Codes that no batch has used for ``dead_after`` steps are restarted at encoder outputs
of the current batch, drawn with the step's generator, so a restart is reproducible.
Everything the updates touch is a buffer: checkpoints carry it and ``--resume`` lands on
exactly the codebook an uninterrupted run has. Updates happen only in training mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Quantized:
    """What one quantizer pass returns."""

    quantized: torch.Tensor  # (N, D, h, w): the codes' vectors, straight-through to z
    codes: torch.Tensor  # (N, h, w) int64
    commitment: torch.Tensor  # scalar: beta * mean ||z - sg(e)||^2 per element
    perplexity: torch.Tensor  # scalar: exp(entropy) of this batch's code usage
    restarted: int  # dead codes restarted by this pass (0 outside training)


def perplexity(counts: torch.Tensor) -> torch.Tensor:
    """``exp(H(p))`` of the usage distribution ``p = counts / sum``: the effective codebook size."""
    p = counts / counts.sum().clamp(min=1)
    return torch.exp(-(p * torch.log(p.clamp(min=1e-12))).sum())


class VectorQuantizer(nn.Module):
    """Nearest-code quantization of (N, D, h, w) feature maps over ``num_codes`` codes."""

    def __init__(
        self,
        num_codes: int,
        dim: int,
        *,
        decay: float = 0.99,
        beta: float = 0.25,
        eps: float = 1e-5,
        dead_after: int = 100,
    ) -> None:
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.num_codes, self.dim = num_codes, dim
        self.decay, self.beta, self.eps, self.dead_after = decay, beta, eps, dead_after
        codebook = torch.randn(num_codes, dim)  # init only: the build's seeded RNG
        self.register_buffer("codebook", codebook)
        # EMA state starts as "each code has seen itself once", so an unused code keeps
        # its vector (sum and count decay together) instead of collapsing to zero.
        self.register_buffer("ema_count", torch.ones(num_codes))
        self.register_buffer("ema_sum", codebook.clone())
        self.register_buffer("unused_steps", torch.zeros(num_codes, dtype=torch.int64))

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """(N, D, h, w) → (N, h, w) indices of the nearest codes (squared Euclidean)."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.dim)
        distances = (
            flat.square().sum(1, keepdim=True)
            - 2.0 * flat @ self.codebook.t()
            + self.codebook.square().sum(1)
        )
        n, _, h, w = z.shape
        return distances.argmin(1).view(n, h, w)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """(N, h, w) int64 → (N, D, h, w) code vectors."""
        return F.embedding(codes, self.codebook).permute(0, 3, 1, 2)

    def forward(self, z: torch.Tensor, generator: torch.Generator | None = None) -> Quantized:
        codes = self.nearest(z)
        counts = torch.bincount(codes.flatten(), minlength=self.num_codes).to(z.dtype)
        restarted = 0
        if self.training:
            flat = z.detach().permute(0, 2, 3, 1).reshape(-1, self.dim)
            self._ema_update(flat, codes.flatten(), counts)
            restarted = self._restart_dead(flat, counts, generator)
        quantized = self.lookup(codes)
        commitment = self.beta * F.mse_loss(z, quantized.detach())
        straight_through = z + (quantized - z).detach()
        return Quantized(straight_through, codes, commitment, perplexity(counts), restarted)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, codes: torch.Tensor, counts: torch.Tensor) -> None:
        sums = torch.zeros_like(self.ema_sum).index_add_(0, codes, flat)
        self.ema_count.mul_(self.decay).add_(counts, alpha=1.0 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1.0 - self.decay)
        total = self.ema_count.sum()
        smoothed = (self.ema_count + self.eps) / (total + self.num_codes * self.eps) * total
        self.codebook.copy_(self.ema_sum / smoothed.unsqueeze(1))

    @torch.no_grad()
    def _restart_dead(
        self, flat: torch.Tensor, counts: torch.Tensor, generator: torch.Generator | None
    ) -> int:
        self.unused_steps.add_(1).masked_fill_(counts > 0, 0)
        dead = (self.unused_steps >= self.dead_after).nonzero().flatten()
        if dead.numel() == 0:
            return 0
        if generator is None:
            raise ValueError("restarting dead codes needs the step's generator")
        picks = torch.randint(0, flat.shape[0], (dead.numel(),), generator=generator)
        self.codebook[dead] = flat[picks]
        self.ema_sum[dead] = flat[picks]
        self.ema_count[dead] = 1.0
        self.unused_steps[dead] = 0
        return int(dead.numel())
