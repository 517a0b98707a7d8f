"""NVAE: a deep hierarchical VAE (Vahdat & Kautz, 2020), at MNIST scale.

Architecture. A bottom-up encoder tower (``EncoderCell``s, stride-2 cells between
scales) leaves one feature map per latent group. A single top-down tower
(``DecoderCell``s) serves both directions: generating, each group's prior
``p(z_l | z_<l)`` is read off the top-down state; inferring, the same state is combined
with the bottom-up feature to give the posterior as a *residual* of that prior,
``q = N(mu_p + dmu, sigma_p * dsigma)``. ``z_l`` is then merged into the state. The top
group's prior is N(0, I). Latent scales run from ``image / 2**latent_scales`` (top) to
``image / 2`` with ``groups_per_scale`` groups each; the decoder ends at full resolution
with a discretized logistic per pixel, so ``-ELBO`` is an honest code length for the
8-bit data and bits/dim compare directly with the other families.

Training objective (per image, nats): ``recon + beta * sum_l gamma_l KL_l`` plus
spectral regularisation ``lambda * sum_conv sigma_max(W)`` (one power iteration per
step, vectors kept in buffers) and optionally ``bn_lambda * sum max|BN weight|``.
``beta`` is the KL warm-up coefficient, ramping linearly from ``kl_min_coeff`` to 1 over
``kl_warmup_steps`` after ``kl_const_steps``; the step count is a buffer incremented by
``training_step``, so a resumed run continues the schedule exactly. While ``beta < 1``
and ``kl_balance`` is on, ``gamma_l`` is proportional to the group's size times its
batch-mean KL per latent variable (normalised to mean 1, no gradient): groups that
carry little information are pushed less, so they are not switched off during warm-up.
Evaluation always uses ``beta = 1`` and ``gamma = 1``: the true negative ELBO.

The trainer knows the run's total steps, the model does not, so the warm-up is given in
steps; the shipped configs set it to a fraction of their ``[train]`` length.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from latentserve.training.families.base import ImageModel, StepOutput
from latentserve.training.families.layers import ImageShape
from latentserve.training.families.nvae_cells import (
    DecoderCell,
    EncoderCell,
    Normal,
    ParamHead,
    SpectralConv2d,
    conv,
    residual_posterior,
)
from latentserve.training.likelihood import discretized_logistic_log_prob, to_unit
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as config_dataclass
from torch import nn

#: ``choose(group, posterior or None, prior) -> z``: how a pass picks each group's latent.
Choose = Callable[[int, Normal | None, Normal], torch.Tensor]


@config_dataclass(config=ConfigDict(extra="forbid"))
class NVAEConfig:
    """Sizes, KL schedule and regularisation; the ``[model]`` table of a training config."""

    channels: int = Field(default=16, gt=0)  # at full resolution; doubles per halving
    latent_channels: int = Field(default=4, gt=0)  # per group
    latent_scales: int = Field(default=2, ge=1)
    groups_per_scale: int = Field(default=2, ge=1)
    cells_per_group: int = Field(default=1, ge=1)
    pre_cells: int = Field(default=1, ge=0)
    post_cells: int = Field(default=1, ge=0)
    decoder_expand: int = Field(default=3, ge=1)
    decoder_kernel: int = Field(default=5, ge=1)  # depthwise; 3 is much cheaper on CPU
    kl_warmup_steps: int = Field(default=0, ge=0)  # 0: beta = 1 from the start
    kl_const_steps: int = Field(default=0, ge=0)
    kl_min_coeff: float = Field(default=1e-4, gt=0, le=1)
    kl_balance: bool = True
    spectral_lambda: float = Field(default=1e-2, ge=0)  # per image, in nats
    bn_lambda: float = Field(default=0.0, ge=0)


class BottomUp(nn.Module):
    """Image → one feature map per latent group, in top-down order (top group first)."""

    def __init__(self, config: NVAEConfig, image: ImageShape, width: Callable[[int], int]):
        super().__init__()
        self.stem = conv(image.channels, width(0), 3)
        pre = [EncoderCell(width(0), width(0)) for _ in range(config.pre_cells)]
        self.pre = nn.Sequential(*pre, EncoderCell(width(0), width(1), stride=2))
        self.scales = nn.ModuleList()  # finest first
        self.downs = nn.ModuleList()
        for level in range(1, config.latent_scales + 1):
            ch = width(level)
            self.scales.append(
                nn.ModuleList(
                    nn.Sequential(*(EncoderCell(ch, ch) for _ in range(config.cells_per_group)))
                    for _ in range(config.groups_per_scale)
                )
            )
            if level < config.latent_scales:
                self.downs.append(EncoderCell(ch, width(level + 1), stride=2))
        top = width(config.latent_scales)
        self.top = nn.Sequential(nn.ELU(), conv(top, top, 1), nn.ELU())

    def forward(self, x01: torch.Tensor) -> list[torch.Tensor]:
        h = self.pre(self.stem(2.0 * x01 - 1.0))
        feats = []
        for i, groups in enumerate(self.scales):
            for cells in groups:
                h = cells(h)
                feats.append(h)
            if i < len(self.downs):
                h = self.downs[i](h)
        top = self.top(feats.pop())
        return [top, *reversed(feats)]


class GroupBlock(nn.Module):
    """One latent group of the top-down tower: cells, prior, posterior and merge."""

    def __init__(self, config: NVAEConfig, ch: int, top: bool) -> None:
        super().__init__()
        zc = config.latent_channels
        kernel, expand = config.decoder_kernel, config.decoder_expand
        n_cells = 0 if top else config.cells_per_group  # the top group starts from h0
        self.cells = nn.Sequential(*(DecoderCell(ch, ch, expand, kernel) for _ in range(n_cells)))
        self.prior = None if top else ParamHead(ch, zc)
        self.enc_combine = None if top else conv(ch, ch, 1)
        self.posterior = ParamHead(ch, zc)
        self.dec_combine = conv(ch + zc, ch, 1)


class NVAE(ImageModel):
    has_prior = True

    def __init__(self, config: NVAEConfig, image: ImageShape) -> None:
        super().__init__(image)
        factor = 2**config.latent_scales
        if image.height % factor or image.width % factor:
            raise ValueError(
                f"image {image.height}x{image.width} must be divisible by 2**latent_scales = "
                f"{factor} (28x28 fits latent_scales <= 2)"
            )
        self.config = config
        kernel, expand = config.decoder_kernel, config.decoder_expand

        def width(level: int) -> int:
            return config.channels * 2**level

        self.bottom_up = BottomUp(config, image, width)
        top_level = config.latent_scales
        self.h0 = nn.Parameter(
            0.1 * torch.randn(1, width(top_level), image.height // factor, image.width // factor)
        )
        self.groups = nn.ModuleList()
        self.group_levels: list[int] = []
        self.ups = nn.ModuleList()  # after each scale's last group: to the next resolution
        for level in range(top_level, 0, -1):
            for _ in range(config.groups_per_scale):
                self.groups.append(GroupBlock(config, width(level), top=not self.groups))
                self.group_levels.append(level)
            self.ups.append(
                DecoderCell(width(level), width(level - 1), expand, kernel, upsample=True)
            )
        post = (DecoderCell(width(0), width(0), expand, kernel) for _ in range(config.post_cells))
        self.post = nn.Sequential(*post)
        self.head = nn.Sequential(nn.ELU(), conv(width(0), 2 * image.channels, 3))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    # ----------------------------------------------------------------------- structure
    @property
    def latent_shapes(self) -> list[tuple[int, int, int]]:
        """C×H×W of each group's latent, top group first."""
        zc = self.config.latent_channels
        return [
            (zc, self.image.height // 2**lv, self.image.width // 2**lv) for lv in self.group_levels
        ]

    @property
    def latent_sizes(self) -> list[int]:
        return [math.prod(s) for s in self.latent_shapes]

    @property
    def latent_dim(self) -> int:
        return sum(self.latent_sizes)

    def split_flat(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """(N, latent_dim) → one (N, C, H, W) tensor per group, top first."""
        parts, start = [], 0
        for shape, size in zip(self.latent_shapes, self.latent_sizes, strict=True):
            parts.append(flat[:, start : start + size].reshape(-1, *shape))
            start += size
        return parts

    # ----------------------------------------------------------------------- passes
    def top_down(
        self, feats: list[torch.Tensor] | None, choose: Choose, ref: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, Normal | None, Normal]]]:
        """Run the shared top-down tower; returns (loc, log_scale, [(z, q, p)] per group).

        ``feats`` (from ``bottom_up``) gives posteriors; without them only priors exist.
        ``ref`` is any (N, *, h_top, w_top) tensor: it fixes the batch size, so traced
        graphs keep a dynamic batch axis.
        """
        zero = torch.zeros_like(ref[:, :1])
        s = self.h0 + zero
        draws = []
        last_of_scale = self._last_of_scale()
        for i, block in enumerate(self.groups):
            if block.prior is None:
                zeros = zero.expand(-1, self.config.latent_channels, -1, -1)
                prior = Normal(zeros, zeros)
                post_in = feats[0] if feats is not None else None
            else:
                s = block.cells(s)
                prior = Normal(*block.prior(s))
                post_in = feats[i] + block.enc_combine(s) if feats is not None else None
            q = None if post_in is None else residual_posterior(prior, *block.posterior(post_in))
            z = choose(i, q, prior)
            draws.append((z, q, prior))
            s = block.dec_combine(torch.cat([s, z], dim=1))
            if i in last_of_scale:
                s = self.ups[last_of_scale.index(i)](s)
        out = self.head(self.post(s))
        loc, log_scale = out.chunk(2, dim=1)
        return loc + 0.5, log_scale - 3.0, draws

    def _last_of_scale(self) -> list[int]:
        g = self.config.groups_per_scale
        return [g * (k + 1) - 1 for k in range(self.config.latent_scales)]

    def posterior_pass(
        self,
        x: torch.Tensor,
        eps: Callable[[int, torch.Tensor], torch.Tensor],
        feats: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, Normal | None, Normal]]]:
        """uint8 (or float-level) ``x`` → (recon nats per image, draws) with
        ``z_l = mu_q + sigma_q * eps(l, mu_q)``; ``feats`` reuses a bottom-up pass of ``x``."""
        feats = self.bottom_up(to_unit(x)) if feats is None else feats

        def choose(i: int, q: Normal | None, p: Normal) -> torch.Tensor:
            return q.at(eps(i, q.mu))

        loc, log_scale, draws = self.top_down(feats, choose, feats[0])
        return self.recon_nats(x, loc, log_scale), draws

    def recon_nats(self, x: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor):
        return -discretized_logistic_log_prob(x, loc, log_scale).flatten(1).sum(1)

    def encode_means(self, x01: torch.Tensor) -> list[torch.Tensor]:
        """Deterministic encode: each group's posterior mean, fed to the groups below."""
        feats = self.bottom_up(x01)
        _, _, draws = self.top_down(feats, lambda i, q, p: q.mu, feats[0])
        return [z for z, _, _ in draws]

    def decode_mean(self, latents: list[torch.Tensor]) -> torch.Tensor:
        """Given every group's latent → the image (logistic location clamped to [0, 1])."""
        loc, _, _ = self.top_down(None, lambda i, q, p: latents[i], latents[0])
        return loc.clamp(0.0, 1.0)

    def sample(self, noises: list[torch.Tensor], temperature: torch.Tensor) -> torch.Tensor:
        """Standard normals per group → images: ``z_l = mu_p + T sigma_p eps_l`` top-down."""
        t = temperature.view(-1, 1, 1, 1)
        loc, _, _ = self.top_down(None, lambda i, q, p: p.at(noises[i], t), noises[0])
        return loc.clamp(0.0, 1.0)

    # ----------------------------------------------------------------------- objective
    def kl_coefficient(self) -> float:
        """Warm-up ``beta`` at the current step (NVAE's linear ramp with a floor)."""
        c = self.config
        if c.kl_warmup_steps == 0:
            return 1.0
        ramp = (int(self.step) - c.kl_const_steps) / c.kl_warmup_steps
        return max(min(ramp, 1.0), c.kl_min_coeff)

    def balance_coefficients(self, kl: torch.Tensor) -> torch.Tensor:
        """(groups,) ``gamma_l ∝ size_l * mean KL per variable of group l`` (+ a floor so a
        collapsed group keeps a small weight), normalised to mean 1, without gradient."""
        sizes = torch.tensor(self.latent_sizes, dtype=kl.dtype)
        per_variable = kl.detach().mean(0) / sizes
        gamma = sizes * per_variable + 0.01
        return gamma / gamma.mean()

    def spectral_loss(self, iterations: int = 1) -> torch.Tensor:
        """Sum of the convs' spectral-norm estimates (updating their power iteration)."""
        norms = [
            m.spectral_norm(iterations) for m in self.modules() if isinstance(m, SpectralConv2d)
        ]
        return torch.stack(norms).sum()

    def batchnorm_loss(self) -> torch.Tensor:
        bns = [m for m in self.modules() if isinstance(m, nn.BatchNorm2d)]
        return torch.stack([m.weight.abs().max() for m in bns]).sum()

    def _elbo_terms(self, x: torch.Tensor, generator: torch.Generator):
        """(recon (N,), per-group analytic KL (N, groups)) from one posterior sample."""

        def eps(i: int, like: torch.Tensor) -> torch.Tensor:
            return torch.randn(like.shape, generator=generator)

        recon, draws = self.posterior_pass(x, eps)
        kl = torch.stack([q.kl(p) for _, q, p in draws], dim=1)
        return recon, kl

    def training_step(
        self, x: torch.Tensor, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> StepOutput:
        recon, kl = self._elbo_terms(x, generator)
        beta = self.kl_coefficient()
        if beta < 1.0 and self.config.kl_balance:
            weighted_kl = (kl * self.balance_coefficients(kl)).sum(1)
        else:
            weighted_kl = kl.sum(1)
        nats = (recon + beta * weighted_kl).mean()
        spectral = self.spectral_loss(1)
        reg = self.config.spectral_lambda * spectral
        if self.config.bn_lambda:
            reg = reg + self.config.bn_lambda * self.batchnorm_loss()
        with torch.no_grad():
            self.step += 1
        dims = self.image.dims
        negative_elbo = (recon + kl.sum(1)).mean().item()
        return StepOutput(
            loss=(nats + reg) / dims,
            metrics={
                "bits_per_dim": negative_elbo / (dims * math.log(2.0)),
                "kl_nats": kl.sum(1).mean().item(),
                "kl_coeff": beta,
                "spectral_sum": spectral.item(),
            },
        )

    def evaluate(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        iw_k: int = 1,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        recon, kl = self._elbo_terms(x, generator)
        kl = kl.sum(1)
        out = {"bits_per_dim": recon + kl, "recon_bits_per_dim": recon, "kl_bits_per_dim": kl}
        if iw_k > 1:
            out[f"iw{iw_k}_bits_per_dim"] = self.iw_nll(x, generator, iw_k)
        return out

    def log_weight(
        self,
        x: torch.Tensor,
        eps: Callable[[int, torch.Tensor], torch.Tensor],
        feats: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``log p(x, z) - log q(z | x)`` per image for the ``z`` that ``eps`` gives
        (sample-based over every group, as the importance-weighted bound needs)."""
        recon, draws = self.posterior_pass(x, eps, feats)
        log_ratio = sum(p.log_prob(z) - q.log_prob(z) for z, q, p in draws)
        return log_ratio - recon

    def iw_nll(self, x: torch.Tensor, generator: torch.Generator, k: int) -> torch.Tensor:
        """``-log (1/k) sum_i p(x, z_i) / q(z_i | x)`` over all groups jointly (Burda et al.)."""
        feats = self.bottom_up(to_unit(x))  # deterministic: shared by the k samples

        def eps(i: int, like: torch.Tensor) -> torch.Tensor:
            return torch.randn(like.shape, generator=generator)

        log_w = torch.stack([self.log_weight(x, eps, feats) for _ in range(k)])
        return -(torch.logsumexp(log_w, 0) - math.log(k))
