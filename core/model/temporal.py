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

`fuse_for_inference` regroups the same sums for a frozen copy (core.model.kernels): phi and
omega (3x1x1 on [Z; X]) become one convolution with stacked outputs, split over input channels
(conv_z(Z) + conv_x(X): no concatenated copy of the stage's largest tensor); tau (1x1x1 on [Z; X])
and sigma (1x1x1 on Z) one convolution on Z with outputs [tau_z; sigma], plus tau_x(X) added into
the tau half; BN folded into eps and eps_b; the pool as a depthwise convolution. `aggregate`
then takes that path; the function is the same to fp32 rounding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .attention import attend
from .backbone import conv_bn
from .kernels import InferenceConv3d, attend_for_inference, memory_format, pool_to, stacked_vectors, vectors_as_frames


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
        self.fused = False
        nn.init.constant_(self.main_out[1].weight, gamma_init)
        if last_stage:  # X^5 is added to the main branch: start it as a no-op too
            nn.init.constant_(self.branch_out[1].weight, gamma_init)

    def forward(self, z: torch.Tensor, x_prev: torch.Tensor, need_map: bool):
        """Returns (dT, X^i, A_t or None): dT = eps(A_t sigma(Z)) is eq. 3's added term."""
        main_agg, x_next, attn = self.aggregate(z, x_prev, need_map)
        return self.main_out(main_agg), x_next, attn

    def add_output(self, main_agg: torch.Tensor, acc: torch.Tensor) -> torch.Tensor:
        """acc + eps(main_agg) (eq. 3's sum); fused, added into acc in place by the conv's epilogue."""
        return self.main_out.add_into(main_agg, acc) if self.fused else acc + self.main_out(main_agg)

    def aggregate(self, z: torch.Tensor, x_prev: torch.Tensor, need_map: bool):
        """(A_t sigma(Z) (B, r, T, H, W), X^i, A_t or None): eqs. 1-2 and eq. 3 up to eps."""
        b, _, t, h, w = z.shape
        r = self._reduced
        if self.fused:
            x_prev = pool_to(x_prev, (t, h, w))
            q, k = stacked_vectors(self.qk_x.add_into(x_prev, self.qk_z(z)), 2, positions=False)  # (B, T, H*W*r)
            values = self.v_z(z)  # (B, 2r, T, H, W): [tau_z Z; sigma Z]
            values[:, :r] += self.v_x(x_prev)
            v = values.permute(0, 2, 3, 4, 1).reshape(b, t, -1)  # (B, T, H*W*2r), (h, w, c) order
            out, attn = attend_for_inference(q, k, v, need_map)
            out = vectors_as_frames(out, h, w, memory_format(z))  # (B, 2r, T, H, W)
        else:
            x_prev = F.adaptive_avg_pool3d(x_prev, (t, h, w))  # eq. 2's stride-2 pool, sized to this stage
            # phi, omega and tau read concat(Z, X); each is split over its input channels instead,
            # conv(Z, W_z) + conv(X, W_x): the same sums without copying Z, the stage's largest tensor.
            c = z.shape[1]
            qk_w = torch.cat([self.query.weight, self.key.weight])  # (2r, C + C_b, 3, 1, 1)
            pad = self.query.padding
            qk = F.conv3d(z, qk_w[:, :c], padding=pad) + F.conv3d(x_prev, qk_w[:, c:], padding=pad)
            q, k = (rearrange(t, "b c t h w -> b t (c h w)") for t in qk.chunk(2, dim=1))
            tau = self.branch_value.weight  # (r, C + C_b, 1, 1, 1)
            values = F.conv3d(z, torch.cat([tau[:, :c], self.main_value.weight]))  # (B, 2r, T, H, W): [tau_z Z; sigma Z]
            values[:, :r] += F.conv3d(x_prev, tau[:, c:])  # tau's half gets tau_x X, as in the fused path
            v = rearrange(values, "b c t h w -> b t (c h w)")
            out, attn = attend(q, k, v, need_map)  # (B, T, 2r*H*W), (B, T, T)
            out = rearrange(out, "b t (c h w) -> b c t h w", h=h, w=w)
        branch_agg, main_agg = out.split(r, dim=1)
        if self.fused:  # BN folded, the ReLU in the convolution's epilogue
            return main_agg, self.branch_out(branch_agg, relu=not self.last_stage), attn
        x_next = self.branch_out(branch_agg)
        if not self.last_stage:
            x_next = F.relu(x_next)
        return main_agg, x_next, attn

    def fuse_for_inference(self, channels_last: bool) -> None:
        c = self.main_value.in_channels
        qk = torch.cat([self.query.weight, self.key.weight])  # (2r, C + C_b, 3, 1, 1)
        pad = self.query.padding
        self.qk_z = InferenceConv3d(qk[:, :c], None, padding=pad, channels_last=channels_last)
        self.qk_x = InferenceConv3d(qk[:, c:], None, padding=pad, channels_last=channels_last)
        tau = self.branch_value.weight  # (r, C + C_b, 1, 1, 1)
        self.v_z = InferenceConv3d(torch.cat([tau[:, :c], self.main_value.weight]), None, channels_last=channels_last)
        self.v_x = InferenceConv3d(tau[:, c:], None, channels_last=channels_last)
        self.branch_out = InferenceConv3d.from_conv(self.branch_out[0], channels_last, self.branch_out[1])
        self.main_out = InferenceConv3d.from_conv(self.main_out[0], channels_last, self.main_out[1])
        del self.query, self.key, self.branch_value, self.main_value
        self.fused = True
