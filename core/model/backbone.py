"""3D ResNet backbone (paper 3.1).

Stage 1: Conv3d 7x7x7 (stride 1,2,2; temporal kernel configurable) -> BN -> ReLU -> MaxPool 3x3x3 (stride 2).
Stages 2-5: residual blocks; the first block of stages 3-5 halves T, H and W (stage 5 only T when
STMANetConfig.last_spatial_stride is 1); STMANetConfig.temporal_strides sets each of these four
temporal halvings (the stem's pool, stages 3-5) to 2 (the paper) or 1 (time kept).
For a 32x112x112 clip: stage 2 is 16x28x28, stage 3 8x14x14, stage 4 4x7x7, stage 5 2x4x4.

Block layouts (torchvision `models/video/resnet.py` style):
  BasicBlock:      3x3x3 -> BN -> ReLU -> 3x3x3 -> BN  (+ shortcut) -> ReLU
  Bottleneck:      1x1x1 -> BN -> ReLU -> 3x3x3 -> BN -> ReLU -> 1x1x1 (x4) -> BN (+ shortcut) -> ReLU

`fuse_for_inference` (called by core.model.inference.optimize_for_inference on a frozen copy)
folds each BN into its convolution and runs them through core.model.kernels: the ReLU and the
shortcut sum happen in the convolutions' epilogues. The same forward then takes that path.
"""
from __future__ import annotations

import torch
from torch import nn

from .configs import STAGE_BLOCKS, STMANetConfig
from .inputs import stem_channels
from .kernels import InferenceConv3d


def conv_bn(c_in: int, c_out: int, kernel, stride=1, padding=0) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False), nn.BatchNorm3d(c_out)
    )


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int | tuple[int, int, int] = 1) -> None:
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = conv_bn(c_in, width, 3, stride, 1)
        self.conv2 = conv_bn(width, c_out, 3, 1, 1)
        self.shortcut = conv_bn(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.fused = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:  # BN folded; ReLU and the shortcut sum in the convolutions' epilogues
            return self.conv2.plus(self.conv1(x, relu=True), self.shortcut(x), relu=True)
        out = self.conv2(self.relu(self.conv1(x)))
        return self.relu(out + self.shortcut(x))

    def fuse_for_inference(self, channels_last: bool) -> None:
        _fuse_convs(self, ("conv1", "conv2"), channels_last)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int | tuple[int, int, int] = 1) -> None:
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = conv_bn(c_in, width, 1)
        self.conv2 = conv_bn(width, width, 3, stride, 1)
        self.conv3 = conv_bn(width, c_out, 1)
        self.shortcut = conv_bn(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.fused = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:  # BN folded; ReLU and the shortcut sum in the convolutions' epilogues
            out = self.conv2(self.conv1(x, relu=True), relu=True)
            return self.conv3.plus(out, self.shortcut(x), relu=True)
        out = self.relu(self.conv1(x))
        out = self.relu(self.conv2(out))
        out = self.conv3(out)
        return self.relu(out + self.shortcut(x))

    def fuse_for_inference(self, channels_last: bool) -> None:
        _fuse_convs(self, ("conv1", "conv2", "conv3"), channels_last)


class Stem(nn.Module):
    """Stage 1: (B, 3, T, H, W) -> (B, base, T/pool_temporal_stride, H/4, W/4)."""

    def __init__(self, in_channels: int, width: int, temporal_kernel: int = 7, pool_temporal_stride: int = 2) -> None:
        super().__init__()
        kernel = (temporal_kernel, 7, 7)
        self.conv = conv_bn(in_channels, width, kernel, stride=(1, 2, 2), padding=(temporal_kernel // 2, 3, 3))
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool3d(3, stride=(pool_temporal_stride, 2, 2), padding=1)
        self.fused = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:  # BN folded, ReLU in the convolution's epilogue
            return self.pool(self.conv(x, relu=True))
        return self.pool(self.relu(self.conv(x)))

    def fuse_for_inference(self, channels_last: bool) -> None:
        _fuse_convs(self, ("conv",), channels_last)


def _fuse_convs(block: nn.Module, names: tuple[str, ...], channels_last: bool) -> None:
    """Each conv_bn named (and a conv_bn shortcut) -> one frozen InferenceConv3d with the BN folded in."""
    for name in names + (("shortcut",) if isinstance(getattr(block, "shortcut", None), nn.Sequential) else ()):
        seq = getattr(block, name)
        setattr(block, name, InferenceConv3d.from_conv(seq[0], channels_last, seq[1]))
    block.fused = True


def make_stages(cfg: STMANetConfig) -> tuple[Stem, nn.ModuleList]:
    """Stage 1 and the four residual stages of a 3D ResNet of `cfg.depth` layers."""
    blocks_per_stage, bottleneck = STAGE_BLOCKS[cfg.depth]
    block = Bottleneck if bottleneck else BasicBlock
    stem = Stem(stem_channels(cfg.input_mode, cfg.in_channels), cfg.base_width, cfg.stem_temporal_kernel,
                cfg.temporal_strides[0])
    stages = nn.ModuleList()
    c_in = cfg.base_width
    for index, n_blocks in enumerate(blocks_per_stage):
        width = cfg.base_width * 2**index
        stride = 1  # (T, H, W) of the stage's first block
        if index > 0:
            spatial = cfg.last_spatial_stride if index == 3 else 2
            stride = (cfg.temporal_strides[index], spatial, spatial)
        layers = []
        for b in range(n_blocks):
            layers.append(block(c_in, width, stride if b == 0 else 1))
            c_in = width * block.expansion
        stages.append(nn.Sequential(*layers))
    return stem, stages


def kaiming_init(module: nn.Module) -> None:
    """Kaiming (He) initialisation for convolutions, as in paper 4.1; BN to identity."""
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
