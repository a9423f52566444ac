"""Scaled dot-product attention that returns its map only when someone needs it, and the
layout helpers that feed it without copies.

Layout: a 1x1x1 or 3x1x1 convolution's output may be in either memory format, plain NCTHW or
channels_last_3d (NTHWC, the format oneDNN's CPU convolutions run fastest in). The dot product
q . k and the attention-weighted sum of v do not depend on the order of the entries of a feature
vector, so TDA flattens each frame as (h, w, c): a free view for channels_last tensors, one copy
(as any order) for plain ones; the result is put back in the input's memory format, so a
channels_last network stays channels_last end to end.
"""
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


def memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last_3d when x is stored that way (and not also plain-contiguous), else contiguous."""
    if x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous():
        return torch.channels_last_3d
    return torch.contiguous_format


def frames_as_vectors(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, T, H*W*C): each frame one vector (a view for channels_last input)."""
    b, _, t = x.shape[:3]
    return x.permute(0, 2, 3, 4, 1).reshape(b, t, -1)


def vectors_as_frames(x: torch.Tensor, h: int, w: int, fmt: torch.memory_format) -> torch.Tensor:
    """Inverse of frames_as_vectors: (B, T, H*W*C) -> (B, C, T, H, W) stored in `fmt`."""
    b, t = x.shape[:2]
    return x.reshape(b, t, h, w, -1).permute(0, 4, 1, 2, 3).contiguous(memory_format=fmt)


def positions_as_vectors(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, H*W, T*C): each spatial position one vector over time and channels."""
    b, _, _, h, w = x.shape
    return x.permute(0, 3, 4, 2, 1).reshape(b, h * w, -1)


def vectors_as_positions(x: torch.Tensor, t: int, h: int, fmt: torch.memory_format) -> torch.Tensor:
    """Inverse of positions_as_vectors: (B, H*W, T*C) -> (B, C, T, H, W) stored in `fmt`."""
    b = x.shape[0]
    return x.reshape(b, h, -1, t, x.shape[-1] // t).permute(0, 4, 3, 1, 2).contiguous(memory_format=fmt)
