"""One sampling step of a gated PixelCNN: the logits at one raster position, computing only
the rows that position can see.

Sampling position p = (i, j) needs the logits at p alone, but running the whole network
recomputes every row of every layer (and a K-way head at every pixel) for each of the
h·w positions. In a gated PixelCNN the horizontal stack at row i sees only row i, and the
vertical stack reaches it through row i - 1 of each layer, whose receptive field grows by
``kernel // 2`` rows per layer. So the step gathers the ``layers · (kernel // 2) + 1`` rows
above p, runs each vertical convolution without top padding (the window shrinks by
``kernel // 2`` rows per layer, down to row i - 1 at the last), runs the horizontal stack
on row i only, and the head on pixel p only. Rows above the image are zeroed at every
layer, exactly as the full network's zero padding does, so the logits equal the full
network's at p (tested at every position).

The position is a per-item input, so one call serves requests at different positions:
the server's autoregressive pipeline batches steps across requests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from latentserve.training.families.pixelcnn import GatedPixelCNN, _gate, shift_right
from torch import nn


class PixelCNNPositionStep(nn.Module):
    """(codes (N, h, w) int64, position (N,) int64 raster index) → logits (N, K) at it."""

    def __init__(self, net: GatedPixelCNN, height: int, width: int) -> None:
        super().__init__()
        if net.attention is not None:
            raise ValueError("a PixelCNN with self-attention sees every earlier row: no row step")
        if any(layer.cond is not None for layer in net.layers):
            raise ValueError("the position step serves unconditional PixelCNNs only")
        self.net, self.height, self.width = net, height, width
        self.half = net.layers[0].half
        # rows i-1-window+1 .. i-1 feed row i's vertical context through every layer
        self.window = len(net.layers) * self.half + 1

    def forward(self, codes: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        n, k = codes.shape[0], self.half
        row = torch.div(position, self.width, rounding_mode="floor")
        col = position - row * self.width
        offsets = torch.arange(-self.window, 0, device=codes.device)
        rows = row[:, None] + offsets[None, :]  # (N, window): absolute rows i-window .. i-1
        inside = (rows >= 0).to(torch.float32)[:, None, :, None]  # (N, 1, window, 1)
        above = self._embedded_rows(codes, rows.clamp(min=0)) * inside
        h = self._embedded_rows(codes, row[:, None])  # (N, C, 1, w)
        has_row_above = (row >= 1).to(torch.float32).view(n, 1, 1, 1)
        v = above
        for index, layer in enumerate(self.net.layers):
            v_pre = layer.vertical(F.pad(v, (k, k, 0, 0)))  # shrinks the window by k rows
            h_in = shift_right(h) if layer.first else h
            h_pre = layer.horizontal(F.pad(h_in, (k, 0, 0, 0)))
            # row i - 1 of this layer's vertical stack (zeros above the image, as shift_down)
            h_pre = h_pre + layer.vertical_to_horizontal(v_pre[:, :, -1:, :] * has_row_above)
            h_out = layer.horizontal_out(_gate(h_pre))
            h = h_out if layer.first else h + h_out
            if index + 1 < len(self.net.layers):
                v = _gate(v_pre) * inside[:, :, (index + 1) * k :, :]
        picked = torch.gather(h[:, :, 0, :], 2, col.view(n, 1, 1).expand(n, h.shape[1], 1))
        return self.net.head(picked.unsqueeze(-1)).flatten(1)  # (N, K)

    def _embedded_rows(self, codes: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Rows ``rows`` (N, R) of each item's code map, embedded: (N, C, R, w)."""
        index = rows[:, :, None].expand(-1, -1, self.width)
        return self.net.embed(torch.gather(codes, 1, index)).permute(0, 3, 1, 2)
