"""Temporal-based deep aggregation, TDA (paper 3.2, eqs. 1-3).

Inputs at stage i: Z^i (B, C, T, H, W) from the backbone and X^{i-1} (B, C/2, T', H', W') from
the previous TDA branch (pooled here to Z^i's T, H, W: the stride-2 pool that closes eq. 2).

  Z_c   = concat(Z^i, X^{i-1})                                   (B, 3C/2, T, H, W)
  eq. 1: A_t = softmax(phi(Z_c) omega(Z_c)^T / sqrt(d))           (B, T, T)
         phi, omega: 3x1x1 convs, each frame flattened to one d-vector
  eq. 2: X^i = pool(eps_b(A_t tau(Z_c)))                         (B, C_{i+1}/2, T, H, W)
  eq. 3: Z^i_t = Z^i + eps(A_t sigma(Z^i))                         (B, C, T, H, W)

The value maps tau and sigma are 1x1x1 reductions to r = C / reduction channels; a 1x1x1 conv
commutes with the attention's mixing over time, so reducing first gives the same function
class at a fraction of the cost (docs/model.md, FLOPs). eps and eps_b are 3x1x1 convs + BN.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .attention import attend
from .backbone import conv_bn


def _temporal_conv(c_in: int, c_out: int, bias: bool = False) -> nn.Conv3d:
    return nn.Conv3d(c_in, c_out, (3, 1, 1), padding=(1, 0, 0), bias=bias)


class TemporalAggregation(nn.Module):
    def __init__(
        self,
        channels: int,
        branch_in: int,
        branch_out: int,
        reduction: int,
        last_stage: bool,
        gamma_init: float = 0.0,
    ) -> None:
        super().__init__()
        r = max(channels // reduction, 4)
        c_cat = channels + branch_in
        self.last_stage = last_stage
        self.query = _temporal_conv(c_cat, r)  # phi
        self.key = _temporal_conv(c_cat, r)  # omega
        self.branch_value = nn.Conv3d(c_cat, r, 1, bias=False)  # tau
        self.main_value = nn.Conv3d(channels, r, 1, bias=False)  # sigma
        self.branch_out = conv_bn(r, branch_out, (3, 1, 1), padding=(1, 0, 0))  # eps_b
        self.main_out = conv_bn(r, channels, (3, 1, 1), padding=(1, 0, 0))  # eps
        self._reduced = r
        nn.init.constant_(self.main_out[1].weight, gamma_init)
        if last_stage:  # X^5 is added to the main branch: start it as a no-op too
            nn.init.constant_(self.branch_out[1].weight, gamma_init)

    def forward(self, z: torch.Tensor, x_prev: torch.Tensor, need_map: bool):
        """Returns (dT, X^i, A_t or None): dT = eps(A_t sigma(Z)) is eq. 3's added term."""
        b, _, t, h, w = z.shape
        x_prev = F.adaptive_avg_pool3d(x_prev, (t, h, w))  # eq. 2's stride-2 pool, sized to this stage
        z_cat = torch.cat([z, x_prev], dim=1)  # (B, 3C/2, T, H, W)
        q = rearrange(self.query(z_cat), "b c t h w -> b t (c h w)")
        k = rearrange(self.key(z_cat), "b c t h w -> b t (c h w)")
        values = torch.cat([self.branch_value(z_cat), self.main_value(z)], dim=1)  # (B, 2r, T, H, W)
        v = rearrange(values, "b c t h w -> b t (c h w)")
        out, attn = attend(q, k, v, need_map)  # (B, T, 2r*H*W), (B, T, T)
        out = rearrange(out, "b t (c h w) -> b c t h w", h=h, w=w)
        branch_agg, main_agg = out.split(self._reduced, dim=1)
        x_next = self.branch_out(branch_agg)
        if not self.last_stage:
            x_next = F.relu(x_next)
        return self.main_out(main_agg), x_next, attn
