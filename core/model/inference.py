"""An inference-only copy of a model that computes the same function faster on CPU.

`optimize_for_inference(model)` returns a frozen copy; the original is untouched. Nothing here
changes what the model computes: the same sums are regrouped, so outputs differ by fp32
rounding only (~1e-6 on the logits; tests/test_bench.py checks it, bench/latency.py reports it).
Training never uses this module: it is for `core.predict.Predictor` and the benchmarks.

What makes it faster (each measured with bench/latency.py; see bench/README.md):
- BatchNorm folded into the convolution before it (eval-mode BN is a per-channel affine map).
- Weights prepacked once (per dtype) into the blocked layout oneDNN's kernels read: an eager
  conv reorders its weight on every call, which dominates the weight-heavy stage 4-5 convolutions
  at batch 1 (2.5-5x faster there; same results bit for bit, whatever the batch size).
- Every Conv3d runs through oneDNN. PyTorch's dispatcher sends small batch-1 inputs (stages 4-5
  of a clip) and single-thread 1x1x1 convolutions to its im2col fallback `slow_conv3d`, which is
  several times slower, returns plain NCTHW (breaking a channels_last chain) and, for
  channels_last weights, copies the weight on every call.
- Weights and activations in channels_last_3d on CPU: oneDNN's native layout, no reorders
  between layers; the attention modules flatten features in an order that is a view of it.
- ReLU and residual additions run inside the convolution that precedes them (oneDNN post-ops
  through `torch.ops.mkldnn._convolution_pointwise`, the kernels torch.compile uses on CPU):
  no separate pass over the activations for them. Plain ops where that op is missing.
- TDA and SDA regrouped: convolutions that read the same input run as one with stacked output
  channels; TDA's concat [Z; X] (a copy of the stage's largest tensor) becomes a split of the
  weights over input channels, conv(Z) + conv(X); the pool of X is a strided depthwise
  convolution when the sizes divide (bit-identical to the adaptive pool; 10x faster on
  channels_last), and skipped when it is the identity (stage 2).
- bf16 attention without maps as the explicit product with an fp32 softmax: PyTorch's CPU SDPA
  kernel is slower in bf16 than the two matmuls at these shapes (fp32 keeps SDPA), and the
  scores are cast to fp32 before the softmax, not by softmax's dtype argument (8x slower).

Under `torch.autocast("cpu", dtype=torch.bfloat16)` each convolution casts its input and (once,
cached) its weights to bf16, as autocast does for conv3d, so bf16 inference keeps autocast's
semantics.

Why this module is long (~450 lines): it is the second forward issue 13 asks to fold into the
modules themselves (a fusing method per block, one forward that picks its kernels); until then
it is kept equivalent by tests at depths 10, 18 and 50.
"""
from __future__ import annotations

import copy
import functools
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_conv_bn_weights

from ..capability import bf16_supported, fused_onednn_ops
from .attention import attend
from .backbone import BasicBlock, Bottleneck, Stem
from .spatial import SpatialAggregation
from .stmanet import STMANet, STMANetOutput
from .temporal import TemporalAggregation

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


def _pool_to(x: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
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


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, need_map: bool):
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


def _stacked_vectors(x: torch.Tensor, parts: int, positions: bool) -> torch.Tensor:
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


# ---------------------------------------------------------------------------- modules


class FastStem(nn.Module):
    def __init__(self, stem: Stem, channels_last: bool) -> None:
        super().__init__()
        self.conv = InferenceConv3d.from_conv(stem.conv[0], channels_last, stem.conv[1])
        self.pool = stem.pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x, relu=True))


class FastConvReLU(nn.Module):
    """Sequential(conv_bn(...), ReLU) (STMANet.tda_entry) as one conv with folded BN and fused ReLU."""

    def __init__(self, entry: nn.Sequential, channels_last: bool) -> None:
        super().__init__()
        self.conv = InferenceConv3d.from_conv(entry[0][0], channels_last, entry[0][1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x, relu=True)


class FastBlock(nn.Module):
    """BasicBlock or Bottleneck: every conv with its BN folded and its ReLU fused; the last conv
    adds the shortcut and applies the ReLU in its epilogue."""

    def __init__(self, block: BasicBlock | Bottleneck, channels_last: bool) -> None:
        super().__init__()
        names = ["conv1", "conv2"] + (["conv3"] if isinstance(block, Bottleneck) else [])
        self.convs = nn.ModuleList(InferenceConv3d.from_conv(getattr(block, n)[0], channels_last, getattr(block, n)[1])
                                   for n in names)
        self.shortcut = None
        if isinstance(block.shortcut, nn.Sequential):
            self.shortcut = InferenceConv3d.from_conv(block.shortcut[0], channels_last, block.shortcut[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for conv in self.convs[:-1]:
            out = conv(out, relu=True)
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return self.convs[-1].plus(out, shortcut, relu=True)


class FastTemporalAggregation(nn.Module):
    """TemporalAggregation (eqs. 1-3) with its convolutions regrouped; same function.

    query/key (3x1x1 on [Z; X]) -> one conv with stacked outputs, split over input channels:
    qk = conv_z(Z) + conv_x(X). tau (1x1x1 on [Z; X]) and sigma (1x1x1 on Z) -> one conv on Z
    with outputs [tau_z; sigma], plus tau_x(X) added into the tau half.
    """

    def __init__(self, tda: TemporalAggregation, channels_last: bool) -> None:
        super().__init__()
        c, r = tda.main_value.in_channels, tda._reduced
        qk = torch.cat([tda.query.weight, tda.key.weight])  # (2r, C + C_b, 3, 1, 1)
        pad = tda.query.padding
        self.qk_z = InferenceConv3d(qk[:, :c], None, padding=pad, channels_last=channels_last)
        self.qk_x = InferenceConv3d(qk[:, c:], None, padding=pad, channels_last=channels_last)
        tau = tda.branch_value.weight  # (r, C + C_b, 1, 1, 1)
        self.v_z = InferenceConv3d(torch.cat([tau[:, :c], tda.main_value.weight]), None, channels_last=channels_last)
        self.v_x = InferenceConv3d(tau[:, c:], None, channels_last=channels_last)
        self.branch_out = InferenceConv3d.from_conv(tda.branch_out[0], channels_last, tda.branch_out[1])
        self.main_out = InferenceConv3d.from_conv(tda.main_out[0], channels_last, tda.main_out[1])
        self.last_stage, self._reduced = tda.last_stage, r

    def aggregate(self, z: torch.Tensor, x_prev: torch.Tensor, need_map: bool):
        """(A_t sigma(Z) (B, r, T, H, W), X^i, A_t or None): everything but eps."""
        _, _, t, h, w = z.shape
        r = self._reduced
        x = _pool_to(x_prev, (t, h, w))
        q, k = _stacked_vectors(self.qk_x.add_into(x, self.qk_z(z)), 2, positions=False)  # (B, T, H*W*r) each
        values = self.v_z(z)  # (B, 2r, T, H, W): [tau_z Z; sigma Z]
        values[:, :r] += self.v_x(x)
        v = values.permute(0, 2, 3, 4, 1).reshape(values.shape[0], t, -1)  # (B, T, H*W*2r)
        out, attn = _attend(q, k, v, need_map)
        out = vectors_as_frames(out, h, w, memory_format(z))  # (B, 2r, T, H, W)
        branch_agg, main_agg = out.split(r, dim=1)
        x_next = self.branch_out(branch_agg, relu=not self.last_stage)
        return main_agg, x_next, attn

    def forward(self, z: torch.Tensor, x_prev: torch.Tensor, need_map: bool):
        """Returns (dT, X^i, A_t or None), as TemporalAggregation.forward."""
        main_agg, x_next, attn = self.aggregate(z, x_prev, need_map)
        return self.main_out(main_agg), x_next, attn


class FastSpatialAggregation(nn.Module):
    """SpatialAggregation (eqs. 4-5) with alpha, beta, eta (1x1x1 on Z) as one conv; same function."""

    def __init__(self, sda: SpatialAggregation, channels_last: bool) -> None:
        super().__init__()
        qkv = torch.cat([sda.query.weight, sda.key.weight, sda.value.weight])
        self.qkv = InferenceConv3d(qkv, None, channels_last=channels_last)
        self.out = InferenceConv3d.from_conv(sda.out[0], channels_last, sda.out[1])

    def aggregate(self, z: torch.Tensor, need_map: bool):
        """(A_s eta(Z) (B, r, T, H, W), A_s or None): everything but pi."""
        t, h = z.shape[2], z.shape[3]
        q, k, v = _stacked_vectors(self.qkv(z), 3, positions=True)  # (B, HW, T*r) each
        out, attn = _attend(q, k, v, need_map)
        return vectors_as_positions(out, t, h, memory_format(z)), attn

    def forward(self, z: torch.Tensor, need_map: bool):
        """Returns (dS, A_s or None), as SpatialAggregation.forward."""
        agg, attn = self.aggregate(z, need_map)
        return self.out(agg), attn


class FastSTMANet(STMANet):
    """STMANet.forward with eq. 8's sums Z + dT + dS done in the eps and pi convolutions'
    epilogues (no separate passes). Built only by `optimize_for_inference`."""

    def forward(self, clip: torch.Tensor, return_attention: bool = False) -> STMANetOutput:
        x = self.stem(prepare_clip(self, self.input(clip)))
        branch = self.tda_entry(x) if self.tda is not None else None
        pooled, spatial, temporal, shapes = [], [], [], []
        for i, stage in enumerate(self.stages):
            z = stage(x)
            a_t, a_s = None, None
            if self.tda is not None:
                main_agg, branch, a_t = self.tda[i].aggregate(z, branch, return_attention)
            if self.sda is not None:
                sda_agg, a_s = self.sda[i].aggregate(z, return_attention)
            # Both aggregates are computed, so Z (the stage's own fresh output) can take the sums
            # in place: no new stage-sized tensor per stage (a fresh one page-faults, see
            # core.runtime.keep_freed_memory), and the in-place epilogue reads one tensor less.
            fused = z
            if self.tda is not None:
                fused = self.tda[i].main_out.add_into(main_agg, fused)  # Z + dT
            if self.sda is not None:
                fused = self.sda[i].out.add_into(sda_agg, fused)  # + dS
            if self.tda is not None and i == 3:
                fused = fused.add_(branch)  # X^5 joins the main branch
            x = fused
            pooled.append(fused.mean(dim=(2, 3, 4)))
            spatial.append(a_s)
            temporal.append(a_t)
            shapes.append(tuple(z.shape[2:]))
        features = torch.cat(pooled, dim=1) if self.cfg.multi_level_fusion else pooled[-1]
        logits = self.classifier(features)  # dropout is the identity in eval mode
        stage_logits = None
        if self.stage_heads is not None:
            stage_logits = [head(p) for head, p in zip(self.stage_heads, pooled)]
        return STMANetOutput(logits, stage_logits, spatial, temporal, shapes, features)


# ---------------------------------------------------------------------------- conversion


def _convert(module: nn.Module, channels_last: bool) -> None:
    """In place, children first: our modules -> their fast forms; in any other Sequential a
    Conv3d followed by BatchNorm3d is folded (torchvision's video ResNets); bare Conv3d ->
    InferenceConv3d."""
    for name, child in list(module.named_children()):
        if isinstance(child, Stem):
            new = FastStem(child, channels_last)
        elif isinstance(child, (BasicBlock, Bottleneck)):
            new = FastBlock(child, channels_last)
        elif isinstance(child, TemporalAggregation):
            new = FastTemporalAggregation(child, channels_last)
        elif isinstance(child, SpatialAggregation):
            new = FastSpatialAggregation(child, channels_last)
        elif isinstance(child, nn.Conv3d):
            new = InferenceConv3d.from_conv(child, channels_last)
        else:
            if isinstance(child, nn.Sequential):
                _fold_sequential(child, channels_last)
            _convert(child, channels_last)
            continue
        setattr(module, name, new)


def _fold_sequential(seq: nn.Sequential, channels_last: bool) -> None:
    """A BatchNorm3d after a Conv3d, or after a Sequential ending in a Conv3d (torchvision's
    Conv2Plus1D), is folded into that conv and replaced by Identity."""
    for i in range(len(seq) - 1):
        if not isinstance(seq[i + 1], nn.BatchNorm3d):
            continue
        if isinstance(seq[i], nn.Conv3d):
            seq[i] = InferenceConv3d.from_conv(seq[i], channels_last, seq[i + 1])
            seq[i + 1] = nn.Identity()
        elif isinstance(seq[i], nn.Sequential) and len(seq[i]) and isinstance(seq[i][-1], nn.Conv3d):
            conv, bn = seq[i][-1], seq[i + 1]
            conv.weight, conv.bias = fuse_conv_bn_weights(
                conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
            )
            seq[i + 1] = nn.Identity()


def optimize_for_inference(model: nn.Module, channels_last: bool | None = None) -> nn.Module:
    """A frozen eval-mode copy of `model` (the original is untouched): see the module docstring.

    channels_last: None picks it on CPU. An STMANet comes back as a FastSTMANet (same outputs,
    same `cfg`); any other module built of Conv3d/BatchNorm3d Sequentials (torchvision's video
    ResNets, for the benchmarks) gets its BN folded and oneDNN convolutions."""
    device = next(model.parameters()).device
    if channels_last is None:
        channels_last = device.type == "cpu"
    fast = copy.deepcopy(model).eval()
    if isinstance(fast, STMANet):
        fast.__class__ = FastSTMANet
        if fast.tda_entry is not None:
            fast.tda_entry = FastConvReLU(fast.tda_entry, channels_last)
    holder = nn.Module()
    holder.add_module("m", fast)
    _convert(holder, channels_last)
    fast = holder.m
    for p in fast.parameters():
        p.requires_grad_(False)
    fast.channels_last = channels_last
    return fast


def prepare_clip(model: nn.Module, clip: torch.Tensor) -> torch.Tensor:
    """A (B, 3, T, H, W) batch in the memory format `model` runs fastest with."""
    if getattr(model, "channels_last", False):
        return clip.contiguous(memory_format=torch.channels_last_3d)
    return clip
