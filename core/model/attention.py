"""Scaled dot-product attention that returns its map only when someone needs it."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, need_map: bool):
    """softmax(q k^T / sqrt(d)) v for q, k: (B, N, d), v: (B, N, e).

    Returns (out (B, N, e), map (B, N, N) or None). Without a map the fused SDPA kernel runs and
    the N x N matrix is never materialised by us.
    """
    if not need_map:
        out = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)).squeeze(1)
        return out, None
    # The paper writes no 1/sqrt(d); without it softmax saturates to one-hot for d in the thousands.
    attn = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)  # (B, N, N)
    return attn @ v, attn
