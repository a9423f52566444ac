"""Spatial-based deep aggregation, SDA (paper 3.3, eqs. 4-5).

Positions are the H*W cells of Z^i (B, C, T, H, W); each position's feature is its vector over
reduced channels and time (r*T).

  eq. 4: A_s = softmax(alpha(Z^i) beta(Z^i)^T / sqrt(d))      (B, HW, HW)
  eq. 5: Z^i_s = Z^i + pi(A_s eta(Z^i))                        (B, C, T, H, W)

alpha, beta, eta: 1x1x1 convs to r = C / reduction channels; pi: 1x1x1 conv back to C + BN.
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from .attention import attend
from .backbone import conv_bn


class SpatialAggregation(nn.Module):
    def __init__(self, channels: int, reduction: int, gamma_init: float = 0.0) -> None:
        super().__init__()
        r = max(channels // reduction, 4)
        self.query = nn.Conv3d(channels, r, 1, bias=False)  # alpha
        self.key = nn.Conv3d(channels, r, 1, bias=False)  # beta
        self.value = nn.Conv3d(channels, r, 1, bias=False)  # eta
        self.out = conv_bn(r, channels, 1)  # pi
        nn.init.constant_(self.out[1].weight, gamma_init)

    def forward(self, z: torch.Tensor, need_map: bool):
        """Returns (dS, A_s or None): dS = pi(A_s eta(Z)) is eq. 5's added term."""
        t, h = z.shape[2], z.shape[3]
        q = rearrange(self.query(z), "b c t h w -> b (h w) (c t)")
        k = rearrange(self.key(z), "b c t h w -> b (h w) (c t)")
        v = rearrange(self.value(z), "b c t h w -> b (h w) (c t)")
        out, attn = attend(q, k, v, need_map)  # (B, HW, r*T), (B, HW, HW)
        out = rearrange(out, "b (h w) (c t) -> b c t h w", h=h, t=t)
        return self.out(out), attn
