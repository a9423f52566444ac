"""Spatial-based deep aggregation, SDA (paper 3.3, eqs. 4-5).

Positions are the H*W cells of Z^i (B, C, T, H, W); each position's feature is its vector over
reduced channels and time (r*T).

  eq. 4: A_s = softmax(alpha(Z^i) beta(Z^i)^T / sqrt(d))      (B, HW, HW)
  eq. 5: Z^i_s = Z^i + pi(A_s eta(Z^i))                        (B, C, T, H, W)

alpha, beta, eta: 1x1x1 convs to r = C / reduction channels; pi: 1x1x1 conv back to C + BN.

`fuse_for_inference` (a frozen copy, core.model.kernels): alpha, beta, eta as one convolution with
stacked outputs, BN folded into pi, positions' features in a free view of channels_last memory;
the same function to fp32 rounding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .attention import attend
from .backbone import conv_bn
from .kernels import InferenceConv3d, attend_for_inference, memory_format, stacked_vectors, vectors_as_positions


class SpatialAggregation(nn.Module):
    def __init__(self, channels: int, reduction: int, gamma_init: float = 0.0) -> None:
        super().__init__()
        r = max(channels // reduction, 4)
        self.query = nn.Conv3d(channels, r, 1, bias=False)  # alpha
        self.key = nn.Conv3d(channels, r, 1, bias=False)  # beta
        self.value = nn.Conv3d(channels, r, 1, bias=False)  # eta
        self.out = conv_bn(r, channels, 1)  # pi
        self.fused = False
        nn.init.constant_(self.out[1].weight, gamma_init)

    def forward(self, z: torch.Tensor, need_map: bool):
        """Returns (dS, A_s or None): dS = pi(A_s eta(Z)) is eq. 5's added term."""
        agg, attn = self.aggregate(z, need_map)
        return self.out(agg), attn

    def add_output(self, agg: torch.Tensor, acc: torch.Tensor) -> torch.Tensor:
        """acc + pi(agg) (eq. 5's sum); fused, added into acc in place by the conv's epilogue."""
        return self.out.add_into(agg, acc) if self.fused else acc + self.out(agg)

    def aggregate(self, z: torch.Tensor, need_map: bool):
        """(A_s eta(Z) (B, r, T, H, W), A_s or None): eq. 4 and eq. 5 up to pi."""
        t, h = z.shape[2], z.shape[3]
        if self.fused:
            q, k, v = stacked_vectors(self.qkv(z), 3, positions=True)  # (B, HW, T*r) each, (t, c) order
            out, attn = attend_for_inference(q, k, v, need_map)
            return vectors_as_positions(out, t, h, memory_format(z)), attn
        # alpha, beta, eta as one convolution with stacked outputs (same sums, one kernel call)
        qkv = F.conv3d(z, torch.cat([self.query.weight, self.key.weight, self.value.weight]))
        q, k, v = (rearrange(t, "b c t h w -> b (h w) (c t)") for t in qkv.chunk(3, dim=1))
        out, attn = attend(q, k, v, need_map)  # (B, HW, r*T), (B, HW, HW)
        return rearrange(out, "b (h w) (c t) -> b c t h w", h=h, t=t), attn

    def fuse_for_inference(self, channels_last: bool) -> None:
        qkv = torch.cat([self.query.weight, self.key.weight, self.value.weight])
        self.qkv = InferenceConv3d(qkv, None, channels_last=channels_last)
        self.out = InferenceConv3d.from_conv(self.out[0], channels_last, self.out[1])
        del self.query, self.key, self.value
        self.fused = True
