"""StyleGAN2's networks (Karras et al., 2020), at MNIST scale.

- Equalised learning rate everywhere: weights are stored N(0, 1) and scaled by
  ``1 / sqrt(fan_in)`` at run time (times ``lr_mul`` in the mapping network).
- Mapping network: pixel-normalised ``z`` → ``w`` through an MLP; it keeps the running
  mean of ``w`` (``w_avg``), the centre that truncation pulls towards.
- Synthesis network: a learned constant at the lowest resolution, then per resolution a
  ×2 (bilinear) upsampling 3×3 layer and a 3×3 layer. Every layer is a *modulated*
  convolution: the input channels are scaled by a style ``s = A(w)`` and the output
  channels *demodulated* to unit expected variance; it then adds per-pixel noise (one
  (B, 1, h, w) input per layer, scaled by a learned strength), a bias and a leaky ReLU.
  Outputs are *skip* connections: each resolution's 1×1 ``to_rgb`` (modulated, not
  demodulated) is added to the upsampled image so far.
- Discriminator: residual blocks (two 3×3 convs and a 1×1 skip, each ×1/2 by average
  pooling, summed and scaled by 1/sqrt(2)), a minibatch standard-deviation feature, then
  a conv and two linear layers to one logit.

Modulation scales the *activations* rather than building per-sample weights (grouped
convolution): the two are equal, and this form keeps the batch axis dynamic in exported
graphs, where a grouped convolution would fix it at the traced batch size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU with the gain that keeps unit variance."""
    return F.leaky_relu(x, 0.2) * SQRT2


def upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class EqualLinear(nn.Module):
    def __init__(
        self, in_features: int, out_features: int, bias_init: float = 0.0, lr_mul: float = 1.0
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class EqualConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel * kernel)
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class MappingNetwork(nn.Module):
    """``z`` → ``w``; ``w_avg`` follows the batch mean of ``w`` while training."""

    def __init__(
        self, z_dim: int, w_dim: int, layers: int, lr_mul: float, w_avg_beta: float
    ) -> None:
        super().__init__()
        dims = [z_dim] + [w_dim] * layers
        self.layers = nn.ModuleList(
            EqualLinear(a, b, lr_mul=lr_mul) for a, b in zip(dims, dims[1:], strict=False)
        )
        self.w_avg_beta = w_avg_beta
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.square().mean(1, keepdim=True) + 1e-8)
        for layer in self.layers:
            x = lrelu(layer(x))
        if self.training:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(0).lerp(self.w_avg, self.w_avg_beta))
        return x

    def truncate(self, w: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        """``w_avg + psi (w - w_avg)`` with one ``psi`` per row of ``w`` (B, w_dim)."""
        return self.w_avg + psi.reshape(-1, 1) * (w - self.w_avg)


class ModulatedConv2d(nn.Module):
    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, w_dim: int, demodulate: bool
    ) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.scale = 1.0 / math.sqrt(in_channels * kernel * kernel)
        self.padding = kernel // 2
        self.demodulate = demodulate

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        style = self.affine(w)  # (B, in)
        weight = self.weight * self.scale
        x = F.conv2d(x * style[:, :, None, None], weight, padding=self.padding)
        if self.demodulate:  # 1 / |s * weight| per sample and output channel
            energy = style.square() @ weight.square().sum((2, 3)).t()  # (B, out)
            x = x * torch.rsqrt(energy + 1e-8)[:, :, None, None]
        return x


class StyleLayer(nn.Module):
    """Modulated 3×3 conv (optionally after ×2 upsampling), noise, bias, leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, up: bool) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, demodulate=True)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.up = up

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = upsample(x)
        x = self.conv(x, w) + self.noise_strength * noise
        return lrelu(x + self.bias[:, None, None])


class ToRGB(nn.Module):
    def __init__(self, in_channels: int, channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[:, None, None]


class SynthesisNetwork(nn.Module):
    """``ws`` (B, num_ws, w_dim) and one noise map per layer → image (B, C, H, W).

    Layer ``i`` of the style layers reads ``ws[:, i]``; each resolution's ``to_rgb`` reads
    the index of the next resolution's first layer (as in StyleGAN2), so
    ``num_ws = len(style layers) + 1`` and style mixing at index ``m`` takes layers
    ``< m`` from one latent and the rest from the other.
    """

    def __init__(
        self, widths: list[int], w_dim: int, channels: int, start: tuple[int, int]
    ) -> None:
        super().__init__()
        self.const = nn.Parameter(torch.randn(widths[0], *start))
        layers = [StyleLayer(widths[0], widths[0], w_dim, up=False)]
        rgbs = [ToRGB(widths[0], channels, w_dim)]
        rgb_index = [1]
        shapes = [start]
        h, w = start
        for width_in, width in zip(widths, widths[1:], strict=False):
            h, w = 2 * h, 2 * w
            layers += [
                StyleLayer(width_in, width, w_dim, up=True),
                StyleLayer(width, width, w_dim, up=False),
            ]
            shapes += [(h, w), (h, w)]
            rgbs.append(ToRGB(width, channels, w_dim))
            rgb_index.append(len(layers))
        self.layers = nn.ModuleList(layers)
        self.rgbs = nn.ModuleList(rgbs)
        self.rgb_index = rgb_index
        #: (h, w) of each layer's noise input, in layer order
        self.noise_shapes = shapes
        self.num_ws = len(layers) + 1

    def forward(self, ws: torch.Tensor, noises: list[torch.Tensor]) -> torch.Tensor:
        x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        x = self.layers[0](x, ws[:, 0], noises[0])
        image = self.rgbs[0](x, ws[:, self.rgb_index[0]])
        for block in range(1, len(self.rgbs)):
            first = 2 * block - 1
            x = self.layers[first](x, ws[:, first], noises[first])
            x = self.layers[first + 1](x, ws[:, first + 1], noises[first + 1])
            image = upsample(image) + self.rgbs[block](x, ws[:, self.rgb_index[block]])
        return image


class ResidualBlock(nn.Module):
    """Two 3×3 convs and a 1×1 skip, both halved by average pooling, summed / sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = EqualConv2d(in_channels, in_channels, 3)
        self.conv2 = EqualConv2d(in_channels, out_channels, 3)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.avg_pool2d(lrelu(self.conv2(lrelu(self.conv1(x)))), 2)
        return (y + F.avg_pool2d(self.skip(x), 2)) / SQRT2


def minibatch_std(x: torch.Tensor, group: int) -> torch.Tensor:
    """Append one feature map: the feature spread across the image's group of ``group``
    images (StyleGAN2: 4; 0 or more than the batch: the whole batch). Images ``i`` and
    ``i + B / group`` share a group, as in StyleGAN2."""
    b, c, h, w = x.shape
    size = b if group <= 0 or group > b else group
    if b % size:
        raise ValueError(f"a batch of {b} cannot be split into minibatch-std groups of {size}")
    grouped = x.reshape(size, b // size, c, h, w)
    spread = (grouped.var(0, unbiased=False) + 1e-8).sqrt().mean((1, 2, 3))  # (B / size,)
    feature = spread.repeat(size).reshape(b, 1, 1, 1).expand(b, 1, h, w)
    return torch.cat([x, feature], dim=1)


class StyleDiscriminator(nn.Module):
    """Image in [-1, 1] → logit; ``widths`` run from the full resolution down."""

    def __init__(
        self, widths: list[int], channels: int, image_size: tuple[int, int], mbstd_group: int = 0
    ) -> None:
        super().__init__()
        self.mbstd_group = mbstd_group
        self.from_rgb = EqualConv2d(channels, widths[0], 1)
        self.blocks = nn.Sequential(
            *(ResidualBlock(a, b) for a, b in zip(widths, widths[1:], strict=False))
        )
        h, w = image_size
        h, w = h // 2 ** (len(widths) - 1), w // 2 ** (len(widths) - 1)
        self.conv = EqualConv2d(widths[-1] + 1, widths[-1], 3)
        self.fc = EqualLinear(widths[-1] * h * w, widths[-1])
        self.out = EqualLinear(widths[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = minibatch_std(self.blocks(lrelu(self.from_rgb(x))), self.mbstd_group)
        x = lrelu(self.conv(x)).flatten(1)
        return self.out(lrelu(self.fc(x))).squeeze(1)
