"""A frozen copy of a model for inference that computes the same function faster on CPU.

`optimize_for_inference(model)` deep-copies the model, puts it in eval mode and asks every block
to fuse itself (`fuse_for_inference`: BatchNorm folded, weights prepacked for oneDNN, ReLU and
residual sums in the convolutions' epilogues, channels_last_3d, TDA/SDA convolutions regrouped);
each block's one forward then takes those kernels (core.model.kernels). The original is
untouched. Outputs differ from the plain model by fp32 rounding only (~1e-6 on the logits;
tests/test_bench.py checks it at depths 10, 18 and 50, bench/latency.py reports it). Training
never uses this: it is for `core.predict.Predictor` and the benchmarks.

What makes it faster, each measured with bench/latency.py (bench/README.md):
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
  through `torch.ops.mkldnn._convolution_pointwise`, the kernels torch.compile uses on CPU).
- TDA and SDA regrouped: convolutions that read the same input run as one with stacked output
  channels; TDA's concat [Z; X] becomes a split of the weights over input channels; the pool of
  X is a strided depthwise convolution when the sizes divide (bit-identical to the adaptive
  pool), and skipped when it is the identity (stage 2).
- bf16 attention without maps as the explicit product with an fp32 softmax (faster than PyTorch's
  CPU SDPA kernel in bf16 at these shapes).

Under `torch.autocast("cpu", dtype=torch.bfloat16)` each convolution casts its input and (once,
cached) its weights to bf16, as autocast does for conv3d, so bf16 inference keeps autocast's
semantics. Other models built of Conv3d/BatchNorm3d Sequentials (torchvision's video ResNets,
for the benchmarks) get their BN folded and oneDNN convolutions.
"""
from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from .kernels import InferenceConv3d
from .stmanet import STMANet


def optimize_for_inference(model: nn.Module, channels_last: bool | None = None) -> nn.Module:
    """A frozen eval-mode copy of `model` (the original is untouched): see the module docstring.

    channels_last: None picks it on CPU. An STMANet comes back as an STMANet whose blocks are
    fused; any other module gets its Conv3d + BatchNorm3d pairs folded and oneDNN convolutions."""
    device = next(model.parameters()).device
    if channels_last is None:
        channels_last = device.type == "cpu"
    fast = copy.deepcopy(model).eval()
    if isinstance(fast, STMANet):
        fast.fuse_for_inference(channels_last)
    else:
        _convert(fast, channels_last)
        fast.channels_last = channels_last
    for p in fast.parameters():
        p.requires_grad_(False)
    return fast


def _convert(module: nn.Module, channels_last: bool) -> None:
    """In place, children first: in a Sequential a Conv3d followed by BatchNorm3d is folded; a
    bare Conv3d becomes an InferenceConv3d."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Conv3d):
            setattr(module, name, InferenceConv3d.from_conv(child, channels_last))
            continue
        if isinstance(child, nn.Sequential):
            _fold_sequential(child, channels_last)
        _convert(child, channels_last)


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
