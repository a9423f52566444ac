"""ST-MANet assembly and multi-level fusion (paper 3.4, eq. 8).

  stage i (2..5):  Z^i   = ResStage_i(Z^{i-1}_f)
                   dT, X^i, A_t = TDA_i(Z^i, X^{i-1})        (eqs. 1-3)
                   dS, A_s      = SDA_i(Z^i)                 (eqs. 4-5)
                   Z^i_f = Z^i + dT + dS  (+ X^5 at stage 5)  the paper's Z^i (+) Z^i_t (+) Z^i_s,
                                                             with Z^i counted once
  eq. 8:           Z = Concat(GAP(Z^2_f), ..., GAP(Z^5_f))   -> dropout -> linear
Without multi-level fusion only GAP(Z^5_f) feeds the classifier. X^1 is the stem output
projected to C_2/2 channels by a 1x1x1 conv (the paper does not say what starts the branch).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .backbone import conv_bn, kaiming_init, make_stages
from .configs import STMANetConfig
from .inputs import ClipInput
from .kernels import ConvReLU, prepare_clip
from .spatial import SpatialAggregation
from .temporal import TemporalAggregation


@dataclass
class STMANetOutput:
    logits: torch.Tensor  # (B, K) from the fused (or stage-5) feature
    stage_logits: list[torch.Tensor] | None  # 4 x (B, K): stage 2..5 heads on detached features
    spatial_attention: list[torch.Tensor | None]  # 4 x (B, H_i*W_i, H_i*W_i), None when not computed
    temporal_attention: list[torch.Tensor | None]  # 4 x (B, T_i, T_i)
    stage_shapes: list[tuple[int, int, int]]  # (T_i, H_i, W_i) of stages 2..5
    features: torch.Tensor  # (B, D) the classifier's input


class STMANet(nn.Module):
    def __init__(self, cfg: STMANetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.fused = self.channels_last = False  # fuse_for_inference sets both
        self.input = ClipInput(cfg.input_mode, cfg.input_clip_norm)
        self.stem, self.stages = make_stages(cfg)
        c = cfg.stage_channels
        gamma = cfg.residual_gamma_init
        self.tda_entry = self.tda = self.sda = None
        if cfg.use_tda:
            self.tda_entry = nn.Sequential(conv_bn(cfg.base_width, c[0] // 2, 1), nn.ReLU(inplace=True))
            self.tda = nn.ModuleList(
                TemporalAggregation(
                    c[i], c[i] // 2, c[i + 1] // 2 if i < 3 else c[3], cfg.tda_reduction, i == 3, gamma
                )
                for i in range(4)
            )
        if cfg.use_sda:
            self.sda = nn.ModuleList(SpatialAggregation(c[i], cfg.sda_reduction, gamma) for i in range(4))
        feature_dim = sum(c) if cfg.multi_level_fusion else c[3]
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(feature_dim, cfg.num_classes)
        self.stage_heads = nn.ModuleList(nn.Linear(ci, cfg.num_classes) for ci in c) if cfg.stage_heads else None
        kaiming_init(self.stem)
        kaiming_init(self.stages)
        for m in (self.classifier, self.stage_heads):
            if m is not None:
                kaiming_init(m)

    def forward(self, clip: torch.Tensor, return_attention: bool = False) -> STMANetOutput:
        """clip: (B, 3, T, H, W), normalised. Attention maps are computed when asked for, or when
        training with the diversity losses (which need them)."""
        need_maps = return_attention or (self.training and self.cfg.diversity_active)
        x = self.stem(prepare_clip(self, self.input(clip)))  # (B, base, T/2, H/4, W/4)
        branch = self.tda_entry(x) if self.tda is not None else None  # X^1: (B, C_2/2, ...)
        pooled, spatial, temporal, shapes = [], [], [], []
        for i, stage in enumerate(self.stages):
            z = stage(x)  # Z^i: (B, C_i, T_i, H_i, W_i)
            a_t = a_s = None
            if self.tda is not None:
                main_agg, branch, a_t = self.tda[i].aggregate(z, branch, need_maps)
            if self.sda is not None:
                sda_agg, a_s = self.sda[i].aggregate(z, need_maps)
            # eq. 8's Z + dT + dS after both aggregates have read Z: fused, the sums are added into
            # Z (the stage's own fresh output) in place by the output convolutions' epilogues
            fused = z
            if self.tda is not None:
                fused = self.tda[i].add_output(main_agg, fused)
            if self.sda is not None:
                fused = self.sda[i].add_output(sda_agg, fused)
            if self.tda is not None and i == 3:  # X^5 joins the main branch
                fused = fused.add_(branch) if self.fused else fused + branch
            x = fused  # Z^i_f
            pooled.append(fused.mean(dim=(2, 3, 4)))  # (B, C_i)
            spatial.append(a_s)
            temporal.append(a_t)
            shapes.append(tuple(z.shape[2:]))
        features = torch.cat(pooled, dim=1) if self.cfg.multi_level_fusion else pooled[-1]
        logits = self.classifier(self.dropout(features))
        stage_logits = None
        if self.stage_heads is not None:
            stage_logits = [head(p.detach()) for head, p in zip(self.stage_heads, pooled)]
        return STMANetOutput(logits, stage_logits, spatial, temporal, shapes, features)

    def fuse_for_inference(self, channels_last: bool) -> None:
        """Every block fuses itself (core.model.kernels: BN folded, oneDNN convolutions with
        prepacked weights, ReLU and sums in epilogues, channels_last); the same forward then takes
        those kernels. For a frozen eval-mode copy only: core.model.inference.optimize_for_inference."""
        blocks = [m for m in self.modules() if m is not self and hasattr(m, "fuse_for_inference")]
        for block in blocks:
            block.fuse_for_inference(channels_last)
        if self.tda_entry is not None:
            self.tda_entry = ConvReLU(self.tda_entry, channels_last)
        self.channels_last, self.fused = channels_last, True


def build_model(cfg: STMANetConfig) -> STMANet:
    return STMANet(cfg)


def forward_flops(cfg: STMANetConfig, num_frames: int, height: int, width: int) -> int:
    """FLOPs of one inference forward of one clip (torch.utils.flop_counter), counted on the meta
    device: no memory, no time, the same count for any weights."""
    with torch.device("meta"):
        model = build_model(cfg).eval()
        clip = torch.empty(1, 3, num_frames, height, width)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(clip)
    return counter.get_total_flops()
