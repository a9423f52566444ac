"""The kernels an inference-fused model runs (`fuse_for_inference` of each block picks them).

Frozen convolutions with BatchNorm folded in, weights prepacked once into oneDNN's blocked layout,
ReLU and residual sums in the convolution's epilogue (`InferenceConv3d`); channels_last_3d
throughout, with the attention modules' features flattened in an order that is a free view of
that memory; TDA's pool as a depthwise convolution or an averaging matmul; the attention product
chosen per dtype and shape (`attend_for_inference`). Each is measured in bench/ (bench/README.md)
and computes the same function as the training modules to fp32 rounding (tests/test_bench.py).
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..capability import bf16_supported, fused_onednn_ops
from .attention import attend

_MKLDNN_DTYPES = (torch.float32, torch.bfloat16)


_FUSED = fused_onednn_ops()  # core.capability: None where this torch build lacks them
_POINTWISE = None if _FUSED is None else _FUSED[:3]  # conv + ReLU, conv + sum, conv accumulated into a sum
_REORDER = None if _FUSED is None else _FUSED[3]  # weight prepacking (the blocked layout the kernels read)


class InferenceConv3d(nn.Module):
    """A frozen 3D convolution (BN already folded in) on oneDNN's path, with optional fused ReLU
    (`forward(x, relu=True)`) and fused residual sum (`plus`, `add_into`)."""

    def __init__(self, weight, bias, stride=(1, 1, 1), padding=(0, 0, 0), dilation=(1, 1, 1), groups=1,
                 channels_last: bool = True) -> None:
        super().__init__()
        self.fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
        self.register_buffer("weight", weight.detach().clone().contiguous(memory_format=self.fmt))
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.stride, self.padding, self.dilation, self.groups = list(stride), list(padding), list(dilation), groups
        self._cast: dict = {}  # (dtype, device) -> (weight, bias): cast (as autocast would) and prepacked, once

    @classmethod
    def from_conv(cls, conv: nn.Conv3d, channels_last: bool, bn: nn.BatchNorm3d | None = None) -> "InferenceConv3d":
        if isinstance(conv.padding, str) or conv.padding_mode != "zeros":
            raise ValueError("InferenceConv3d needs numeric zero padding")
        if bn is not None:
            conv = fuse_conv_bn_eval(conv.eval(), bn.eval())
        return cls(conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups, channels_last)

    def extra_repr(self) -> str:
        o, i, *k = self.weight.shape
        return f"{i}, {o}, kernel={tuple(k)}, stride={tuple(self.stride)}, channels_last={self.fmt == torch.channels_last_3d}"

    def _args(self, x: torch.Tensor):
        """(x, weight, bias) cast and laid out for oneDNN, or None when oneDNN does not apply."""
        if x.device.type != "cpu" or not torch.backends.mkldnn.is_available():
            return None
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        if dtype not in _MKLDNN_DTYPES or (dtype == torch.bfloat16 and not bf16_supported("cpu")):
            return None  # oneDNN's bf16 kernels need AVX-512 BW/VL/DQ or AVX-NE-CONVERT
        key = (dtype, self.weight.device)
        if key not in self._cast:  # once per dtype: cast, then prepack for the first input's shape
            weight = self.weight.to(dtype)
            if _REORDER is not None:  # valid (bit-identical results) for any batch size after that
                weight = _REORDER(weight, self.padding, self.stride, self.dilation, self.groups, list(x.shape))
            self._cast[key] = (weight, None if self.bias is None else self.bias.to(dtype))
        weight, bias = self._cast[key]
        return x.to(dtype).contiguous(memory_format=self.fmt), weight, bias

    def _geometry(self):
        return self.padding, self.stride, self.dilation, self.groups

    def forward(self, x: torch.Tensor, relu: bool = False) -> torch.Tensor:
        args = self._args(x)
        if args is None:
            out = F.conv3d(x, self.weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype),
                           self.stride, self.padding, self.dilation, self.groups)
            return F.relu(out, inplace=True) if relu else out
        if _POINTWISE is None:
            out = torch.ops.aten.mkldnn_convolution(*args, *self._geometry())
            return F.relu(out, inplace=True) if relu else out
        return _POINTWISE[0](*args, *self._geometry(), "relu" if relu else "none", [], "")

    def plus(self, x: torch.Tensor, other: torch.Tensor, relu: bool = False) -> torch.Tensor:
        """conv(x) + other (then ReLU), as one oneDNN call; a new tensor."""
        args = self._args(x)
        if args is None or _POINTWISE is None or other.dtype != args[0].dtype:
            out = self(x) + other
            return F.relu(out, inplace=True) if relu else out
        x, weight, bias = args
        other = other.contiguous(memory_format=self.fmt)
        return _POINTWISE[1](x, other, weight, bias, *self._geometry(), "add", None, "relu" if relu else None, [], "")

    def add_into(self, x: torch.Tensor, acc: torch.Tensor) -> torch.Tensor:
        """acc += conv(x) in place (acc must be this network's own scratch tensor); returns acc."""
        args = self._args(x)
        fmt_ok = acc.is_contiguous(memory_format=self.fmt)
        if args is None or _POINTWISE is None or acc.dtype != args[0].dtype or not fmt_ok:
            return acc.add_(self(x))
        return _POINTWISE[2](acc, *args, *self._geometry(), "add", 1.0, None, [], None)


def memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last_3d when x is stored that way (and not also plain-contiguous), else contiguous."""
    if x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous():
        return torch.channels_last_3d
    return torch.contiguous_format


def vectors_as_frames(x: torch.Tensor, h: int, w: int, fmt: torch.memory_format) -> torch.Tensor:
    """(B, T, H*W*C), features in (h, w, c) order -> (B, C, T, H, W) stored in `fmt` (a free view
    when fmt is channels_last)."""
    b, t = x.shape[:2]
    return x.reshape(b, t, h, w, -1).permute(0, 4, 1, 2, 3).contiguous(memory_format=fmt)


def vectors_as_positions(x: torch.Tensor, t: int, h: int, fmt: torch.memory_format) -> torch.Tensor:
    """(B, H*W, T*C), features in (t, c) order -> (B, C, T, H, W) stored in `fmt`."""
    b = x.shape[0]
    return x.reshape(b, h, -1, t, x.shape[-1] // t).permute(0, 4, 3, 1, 2).contiguous(memory_format=fmt)


def pool_to(x: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """TDA's adaptive average pool. The identity when sizes match (stage 2); when they divide, the
    same means as a strided depthwise oneDNN convolution with weights 1/k (k a power of two for
    the paper's stride-2 pools, so bit-identical in fp32), fast on channels_last; otherwise
    (stage 5 at 112 px: 7 -> 4) on channels_last, a matmul with the pool's averaging matrix."""
    in_size = tuple(x.shape[2:])
    if in_size == tuple(size):
        return x
    cpu_ok = x.device.type == "cpu" and x.dtype in _MKLDNN_DTYPES and torch.backends.mkldnn.is_available()
    factors = [i // o if o and i % o == 0 else 0 for i, o in zip(in_size, size)]
    fmt = memory_format(x)
    if not cpu_ok or 0 in factors:
        if fmt == torch.channels_last_3d:
            return _pool_by_matmul(x, size)
        return F.adaptive_avg_pool3d(x, size)
    c = x.shape[1]
    weight = torch.full((c, 1, *factors), 1.0 / (factors[0] * factors[1] * factors[2]), dtype=x.dtype)
    weight = weight.contiguous(memory_format=fmt)
    return torch.ops.aten.mkldnn_convolution(x, weight, None, [0, 0, 0], factors, [1, 1, 1], c)


@functools.lru_cache(maxsize=32)
def adaptive_pool_matrix(in_size: tuple[int, ...], out_size: tuple[int, ...]) -> torch.Tensor:
    """(prod(out_size), prod(in_size)) matrix M with M @ x (x flattened over the pooled dims) the
    adaptive average pool: output cell j of a dim averages inputs floor(j*i/o) .. ceil((j+1)*i/o)-1."""
    matrix = torch.ones(1, 1, dtype=torch.float64)
    for i, o in zip(in_size, out_size):
        m = torch.zeros(o, i, dtype=torch.float64)
        for j in range(o):
            start, end = (j * i) // o, -(-(j + 1) * i // o)
            m[j, start:end] = 1.0 / (end - start)
        matrix = torch.kron(matrix, m)
    return matrix.float()


def _pool_by_matmul(x: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """adaptive_avg_pool3d of a channels_last x as one small matmul over its positions (the pool
    kernel is slow on channels_last: 0.9 ms fp32, 1.7 ms bf16 for stage 4's 1024x4x7x7 at batch
    1, against ~0.1 ms). Accumulates in fp32; equal to the pool to fp32 rounding."""
    b, c, t, h, w = x.shape
    matrix = adaptive_pool_matrix((t, h, w), tuple(size)).to(x.device)
    positions = x.permute(0, 2, 3, 4, 1).reshape(b, t * h * w, c).float()  # a view of channels_last memory
    pooled = (matrix @ positions).to(x.dtype)  # (B, T'H'W', C)
    return pooled.reshape(b, *size, c).permute(0, 4, 1, 2, 3)  # channels_last (B, C, T', H', W')


def attend_for_inference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, need_map: bool):
    """attention.attend, except on CPU without maps where the explicit product is faster:
    - bf16: PyTorch's CPU SDPA kernel is slower in bf16 than the two matmuls with an fp32 softmax
      at these shapes (6x for TDA's few long vectors at batch 8, 1.7x for SDA's 784 positions);
    - fp32 with fewer queries than features (TDA: 16 frames of 25088 features at stage 2): SDPA's
      math path scales q and k (two passes over them), the explicit product scales the 16x16
      scores. SDA's fp32 784 x 784 keeps the fused kernel (as fast, and no N x N matrix kept)."""
    n, d = q.shape[-2], q.shape[-1]
    explicit = q.dtype == torch.bfloat16 or (q.dtype == torch.float32 and n < d)
    if need_map or not explicit or q.device.type != "cpu":
        return attend(q, k, v, need_map)
    # softmax(x, dtype=float32) on a bf16 x takes a slow converting kernel (4.3 ms vs 0.55 ms for
    # an explicit cast, then softmax, for SDA's 784x784 scores): same values, bit for bit
    scores = (q @ k.transpose(1, 2)).float().mul_(1.0 / math.sqrt(d))
    return torch.softmax(scores, dim=-1).to(v.dtype) @ v, None


def stacked_vectors(x: torch.Tensor, parts: int, positions: bool) -> torch.Tensor:
    """(B, parts*r, T, H, W) -> (parts, B, N, d): q, k (and v) of a stacked conv, one copy.

    Frames (positions=False): N = T, features in (h, w, c) order. Positions (positions=True):
    N = H*W, features in (t, c) order. The training modules flatten as (c, h, w) and (c, t); a dot
    product and a weighted sum do not depend on the order of the terms, and this order is a free
    view of channels_last memory, so the copy keeps the network channels_last end to end.
    """
    b, c, t, h, w = x.shape
    x = x.view(b, parts, c // parts, t, h, w)
    if positions:
        return x.permute(1, 0, 4, 5, 3, 2).reshape(parts, b, h * w, -1)
    return x.permute(1, 0, 3, 4, 5, 2).reshape(parts, b, t, -1)



class ConvReLU(nn.Module):
    """conv_bn(...) + ReLU (a Sequential) as one frozen convolution with its ReLU fused."""

    def __init__(self, seq: nn.Sequential, channels_last: bool) -> None:
        super().__init__()
        self.conv = InferenceConv3d.from_conv(seq[0][0], channels_last, seq[0][1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x, relu=True)


def prepare_clip(model: nn.Module, clip: torch.Tensor) -> torch.Tensor:
    """A (B, 3, T, H, W) batch in the memory format `model` runs fastest with."""
    if getattr(model, "channels_last", False):
        return clip.contiguous(memory_format=torch.channels_last_3d)
    return clip
