"""The multi-level fusion loss (paper 3.4, eqs. 6, 7, 9).

  eq. 6: A'^i = S^i(A^i), i = 2..5      attention of stage i average-pooled to stage 5's size
  eq. 7: L_s = sum_{(i,j) in theta} f(A'^i_s, A'^j_s),  L_t likewise with the temporal maps
         theta = {(i, j) | 2 <= i, j <= 5, i != j} (ordered pairs, as written), f = cosine
         similarity of the flattened maps, averaged over the batch
  eq. 9: L = L_ce + lambda1 L_s + lambda2 L_t

Two departures, both configuration (`diversity_form`, `diversity_margin`; the defaults of
STMANetConfig are the paper's, docs/model.md says why the shipped model departs):
  received: f compares r^i = (1/N) sum_q A^i[q, :], the attention each position (time step)
            receives, a distribution over the grid, aligned to stage 5's grid by average pooling,
            instead of the full N x N matrices (which one-hot maps on fixed cells minimise).
  grid:     "last" aligns to stage 5's grid (eq. 6); "first" (received form only) to stage 2's,
            coarser maps repeated over the cells they cover. At 64 px stage 5 is 2x2 and, with 16
            frames, one time step: four distributions over four cells can only be told apart by
            being one-hot, and L_t is constant.
  margin m: each pair adds max(0, f - m) instead of f, so stages that already differ by more
            than the margin are left alone rather than pushed towards ever more peaked maps.
  stages:   theta over stages 2..diversity_last_stage (5: the paper's).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .configs import STMANetConfig


def align_spatial(attn: torch.Tensor, grid: tuple[int, int], target: tuple[int, int]) -> torch.Tensor:
    """S(.) for a spatial map: (B, H*W, H*W) on an HxW grid -> (B, h*w, h*w), pooling both axes."""
    b = attn.shape[0]
    (h, w), (th, tw) = grid, target
    keys = F.adaptive_avg_pool2d(attn.reshape(b * h * w, 1, h, w), (th, tw))  # pool the key axis
    keys = keys.reshape(b, h * w, th * tw).transpose(1, 2)  # (B, hw_t, HW)
    queries = F.adaptive_avg_pool2d(keys.reshape(b * th * tw, 1, h, w), (th, tw))  # pool the query axis
    return queries.reshape(b, th * tw, th * tw).transpose(1, 2)


def align_temporal(attn: torch.Tensor, target: int) -> torch.Tensor:
    """S(.) for a temporal map: (B, T, T) -> (B, t, t)."""
    return F.adaptive_avg_pool2d(attn.unsqueeze(1), (target, target)).squeeze(1)


def received_spatial(attn: torch.Tensor, grid: tuple[int, int], target: tuple[int, int]) -> torch.Tensor:
    """(B, HW, HW) row-stochastic map on an HxW grid -> (B, h*w): the attention each cell
    receives (mean over queries), average-pooled to a coarser target grid or repeated over the
    cells of a finer one."""
    b = attn.shape[0]
    received = attn.mean(1).reshape(b, 1, *grid)  # (B, 1, H, W)
    if target[0] >= grid[0] and target[1] >= grid[1]:
        return F.interpolate(received, size=target, mode="nearest").flatten(1)
    return F.adaptive_avg_pool2d(received, target).flatten(1)


def received_temporal(attn: torch.Tensor, target: int) -> torch.Tensor:
    """(B, T, T) -> (B, t): the attention each time step receives, pooled (or repeated) to t steps."""
    received = attn.mean(1).unsqueeze(1)  # (B, 1, T)
    if target >= received.shape[-1]:
        return F.interpolate(received, size=target, mode="nearest").squeeze(1)
    return F.adaptive_avg_pool1d(received, target).squeeze(1)


def diversity(maps: list[torch.Tensor], margin: float = 0.0) -> torch.Tensor:
    """eq. 7 for maps already aligned to one size: sum over ordered pairs i != j of the batch-mean
    cosine similarity of the flattened maps (with a margin: of max(0, cos - margin))."""
    flat = F.normalize(torch.stack([m.flatten(1) for m in maps]), dim=-1)  # (S, B, D)
    cos = torch.einsum("ibd,jbd->ijb", flat, flat)  # (S, S, B)
    if margin > 0:
        cos = F.relu(cos - margin)
    cos = cos.mean(-1)  # (S, S)
    return cos.sum() - cos.diagonal().sum()


def similarity(maps: list[torch.Tensor]) -> torch.Tensor:
    """Per-sample stage-by-stage cosine similarity of aligned maps: (S, B, ...) -> (B, S, S)."""
    flat = F.normalize(torch.stack([m.flatten(1) for m in maps]).float(), dim=-1)  # (S, B, D)
    return torch.einsum("ibd,jbd->bij", flat, flat)


def stage_similarity(output) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(spatial, temporal) (B, 4, 4) matrices of an STMANetOutput with maps: the quantity eq. 7
    sums, per sample, before any training signal is taken from it. None where a map is absent."""
    shapes = output.stage_shapes
    spatial = temporal = None
    if output.spatial_attention[0] is not None:
        spatial = similarity([align_spatial(a, s[1:], shapes[-1][1:]) for a, s in zip(output.spatial_attention, shapes)])
    if output.temporal_attention[0] is not None:
        temporal = similarity([align_temporal(a, shapes[-1][0]) for a in output.temporal_attention])
    return spatial, temporal


def spatial_diversity(spatial: list[torch.Tensor], stage_shapes: list[tuple[int, int, int]],
                      form: str = "paper", margin: float = 0.0, grid: str = "last") -> torch.Tensor:
    target = stage_shapes[0 if grid == "first" else -1][1:]
    align = received_spatial if form == "received" else align_spatial
    return diversity([align(a, s[1:], target) for a, s in zip(spatial, stage_shapes)], margin)


def temporal_diversity(temporal: list[torch.Tensor], stage_shapes: list[tuple[int, int, int]],
                       form: str = "paper", margin: float = 0.0, grid: str = "last") -> torch.Tensor:
    target = stage_shapes[0 if grid == "first" else -1][0]
    align = received_temporal if form == "received" else align_temporal
    return diversity([align(a, target) for a in temporal], margin)


@dataclass
class LossTerms:
    total: torch.Tensor  # what backward() is called on
    ce: torch.Tensor
    spatial: torch.Tensor  # L_s (0 when SDA or the diversity loss is off)
    temporal: torch.Tensor  # L_t
    stage_heads: torch.Tensor  # CE of the per-stage heads (detached features: trains only the heads)

    def as_floats(self) -> dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in ("total", "ce", "spatial", "temporal", "stage_heads")}


def stmanet_loss(output, target: torch.Tensor, cfg: STMANetConfig, label_smoothing: float = 0.0,
                 diversity_weight: float = 1.0) -> LossTerms:
    """eq. 9 on an `STMANetOutput`, plus the stage heads' own cross-entropy. diversity_weight
    scales lambda1 and lambda2 (a training schedule's warm-up; 1 is eq. 9)."""
    zero = output.logits.new_zeros(())
    ce = F.cross_entropy(output.logits.float(), target, label_smoothing=label_smoothing)
    l_s = l_t = zero
    n = cfg.diversity_last_stage - 1  # stages 2..last
    if cfg.diversity_loss and cfg.use_sda and output.spatial_attention[0] is not None:
        l_s = spatial_diversity([a.float() for a in output.spatial_attention[:n]], output.stage_shapes[:n],
                                cfg.diversity_form, cfg.diversity_margin, cfg.diversity_grid)
    if cfg.diversity_loss and cfg.use_tda and output.temporal_attention[0] is not None:
        l_t = temporal_diversity([a.float() for a in output.temporal_attention[:n]], output.stage_shapes[:n],
                                 cfg.diversity_form, cfg.diversity_margin, cfg.diversity_grid)
    heads = zero
    if output.stage_logits is not None:
        heads = sum(F.cross_entropy(s.float(), target) for s in output.stage_logits)
    total = ce + diversity_weight * (cfg.lambda_spatial * l_s + cfg.lambda_temporal * l_t) + heads
    return LossTerms(total, ce, l_s, l_t, heads)
