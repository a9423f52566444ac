"""Spatial-based deep aggregation, SDA (paper 3.3, eqs. 4-5).

Positions are the H*W cells of Z^i (B, C, T, H, W); each position's feature is its vector over
reduced channels and time (r*T, ordered (t, c): the order does not change a dot product).

  eq. 4: A_s = softmax(alpha(Z^i) beta(Z^i)^T / sqrt(d))      (B, HW, HW)
  eq. 5: Z^i_s = Z^i + pi(A_s eta(Z^i))                        (B, C, T, H, W)

alpha, beta, eta: 1x1x1 convs to r = C / reduction channels; pi: 1x1x1 conv back to C + BN.
"""
from __future__ import annotations

import torch
from torch import nn

from .attention import attend, memory_format, positions_as_vectors, vectors_as_positions
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
        q = positions_as_vectors(self.query(z))  # (B, HW, T*r)
        k = positions_as_vectors(self.key(z))
        v = positions_as_vectors(self.value(z))
        out, attn = attend(q, k, v, need_map)  # (B, HW, T*r), (B, HW, HW)
        out = vectors_as_positions(out, t, h, memory_format(z))  # (B, r, T, H, W), z's layout
        return self.out(out), attn
