"""Does a stage's attention mean anything? Three numbers per stage, from the attention each
position (time step) *receives*: r = (1/N) sum_q A[q, :], a distribution over the grid.

  input dependence  mean over pairs of videos (u, v) of 1 - cos(r_u, r_v)
                    0: the same map for every video (it ignores the input)
  concentration     exp(H(r)) / N, H the entropy: the effective share of cells attended
                    1/N: one-hot; 1: uniform
  on-motion lift    (sum_j r_j m_j) / mean_j(m_j), m_j the share of cell j that moves
                    1: no preference; 1 / (moving area share) at most: only on what moves

The moving region is the one the motion crop uses (core.data.roi.moving_mask) on the frames the
model saw. Temporal maps get dependence and concentration over time steps (no lift: a clip's
motion is not located in time the way it is in space). A stage's maps are called degenerate
when they are fixed (dependence < FIXED_BELOW) or one-hot (concentration < ONE_HOT_CELLS / N).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .data.clips import ClipConfig, clip_to_frames
from .data.roi import moving_mask

STAGES = ("stage 2", "stage 3", "stage 4", "stage 5")
FIXED_BELOW = 0.05  # input dependence under this: the map is (nearly) the same for every video
ONE_HOT_CELLS = 1.5  # an effective number of attended cells under this: one-hot
MAX_VIDEOS = 256  # videos kept per stage for the pairwise dependence (evenly thinned beyond)


def received(attn: torch.Tensor) -> torch.Tensor:
    """(B, N, N) row-stochastic map -> (B, N): the mean attention each key position receives."""
    return attn.float().mean(1)


def _received(maps) -> torch.Tensor:
    """(W, N, N) maps -> their received (W, N); (W, N) received maps (array or tensor) as they are."""
    maps = torch.as_tensor(maps).float().cpu()
    return received(maps) if maps.ndim == 3 else maps.reshape(len(maps), -1)


def input_dependence(maps: torch.Tensor) -> float:
    """maps (V, N), one per video: mean over pairs u < v of 1 - cos(maps_u, maps_v); nan if V < 2."""
    if maps.shape[0] < 2:
        return float("nan")
    unit = F.normalize(maps.double(), dim=1)
    cos = unit @ unit.T
    upper = torch.triu_indices(len(maps), len(maps), offset=1)
    return max(0.0, float((1 - cos[upper[0], upper[1]]).mean()))  # rounding can dip below 0


def concentration(maps: torch.Tensor) -> torch.Tensor:
    """maps (B, N), each a distribution: exp(entropy) / N per row, in [1/N, 1]."""
    p = maps.double().clamp_min(0)
    p = p / p.sum(1, keepdim=True).clamp_min(1e-12)
    entropy = -(p * p.clamp_min(1e-30).log()).sum(1)
    return entropy.exp() / maps.shape[1]


def motion_lift(maps: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """maps (B, N) distributions, motion (B, N) moving share of each cell in [0, 1] -> (B,) lift;
    nan for a clip where nothing moves."""
    p = maps.double() / maps.double().sum(1, keepdim=True).clamp_min(1e-12)
    m = motion.double()
    area = m.mean(1)
    lift = (p * m).sum(1) / area.clamp_min(1e-12)
    return torch.where(area > 0, lift, torch.full_like(lift, float("nan")))


def motion_cells(clips: torch.Tensor, clip_cfg: ClipConfig, grid: tuple[int, int]) -> torch.Tensor:
    """Normalised clips (B, 3, T, H, W) -> (B, h*w): the share of each grid cell that moves."""
    masks = [torch.from_numpy(moving_mask(clip_to_frames(c, clip_cfg)).astype(np.float32)) for c in clips]
    stacked = torch.stack(masks).unsqueeze(1)  # (B, 1, H, W)
    return F.adaptive_avg_pool2d(stacked, grid).flatten(1)


@dataclass
class StageQuality:
    """Accumulates one stage's received maps over windows, grouped by video."""

    cells: int = 0
    per_video: list[torch.Tensor] = field(default_factory=list)  # (N,) mean received map per video
    concentration: list[float] = field(default_factory=list)  # per window
    lift: list[float] = field(default_factory=list)  # per window (finite ones)

    def summary(self) -> dict:
        videos = self.per_video
        if len(videos) > MAX_VIDEOS:
            keep = np.linspace(0, len(videos) - 1, MAX_VIDEOS).round().astype(int)
            videos = [videos[k] for k in keep]
        dependence = input_dependence(torch.stack(videos)) if videos else float("nan")
        conc = float(np.mean(self.concentration)) if self.concentration else float("nan")
        lift = float(np.mean(self.lift)) if self.lift else None
        return {"cells": self.cells, "input_dependence": _finite(dependence), "concentration": _finite(conc),
                "effective_cells": _finite(conc * self.cells), "motion_lift": _finite(lift),
                "videos": len(self.per_video), "degenerate": degeneracy(dependence, conc, self.cells)}


def _finite(value):
    return None if value is None or not math.isfinite(value) else float(value)


def degeneracy(dependence: float | None, conc: float | None, cells: int) -> str | None:
    """'fixed', 'one-hot', 'fixed and one-hot', or None when the maps look like attention (or when
    the grid has one cell: there is nothing to attend between)."""
    if cells <= 1:
        return None
    fixed = dependence is not None and math.isfinite(dependence) and dependence < FIXED_BELOW
    one_hot = conc is not None and math.isfinite(conc) and cells > 1 and conc * cells < ONE_HOT_CELLS
    return " and ".join(w for w, on in (("fixed", fixed), ("one-hot", one_hot)) if on) or None


class AttentionQuality:
    """Feed it each video's windows' model output; `report()` gives per-stage statistics."""

    def __init__(self, clip_cfg: ClipConfig) -> None:
        self.clip_cfg = clip_cfg
        self.spatial = [StageQuality() for _ in STAGES]
        self.temporal = [StageQuality() for _ in STAGES]

    def add_video(self, clips: torch.Tensor, spatial: list, temporal: list, shapes: list) -> None:
        """clips (W, 3, T, H, W) and the model's maps for them: lists over stages of (W, N, N) maps,
        or of (W, N) received maps already taken from them, or None."""
        motion_by_grid: dict[tuple[int, int], torch.Tensor] = {}
        for i, (a_s, a_t, shape) in enumerate(zip(spatial, temporal, shapes)):
            if a_s is not None:
                grid = (int(shape[1]), int(shape[2]))
                if grid not in motion_by_grid:
                    motion_by_grid[grid] = motion_cells(clips.cpu(), self.clip_cfg, grid)
                self._add(self.spatial[i], _received(a_s), motion_by_grid[grid])
            if a_t is not None:
                self._add(self.temporal[i], _received(a_t), None)

    @staticmethod
    def _add(stage: StageQuality, r: torch.Tensor, motion: torch.Tensor | None) -> None:
        stage.cells = r.shape[1]
        stage.per_video.append(r.mean(0))
        stage.concentration += concentration(r).tolist()
        if motion is not None:
            stage.lift += [v for v in motion_lift(r, motion).tolist() if math.isfinite(v)]

    def report(self) -> dict:
        out = {}
        for kind, stages in (("spatial", self.spatial), ("temporal", self.temporal)):
            rows = {name: s.summary() for name, s in zip(STAGES, stages) if s.per_video}
            if rows:
                out[kind] = rows
        return out


def video_quality(spatial: list, temporal: list, clips: torch.Tensor, clip_cfg: ClipConfig, shapes: list) -> dict:
    """One video's concentration and lift per stage (dependence needs several videos)."""
    quality = AttentionQuality(clip_cfg)
    quality.add_video(clips, spatial, temporal, shapes)
    return quality.report()


def describe(report: dict, where: str = "this video") -> list[str]:
    """Plain sentences naming each degenerate stage of a report (empty when none is)."""
    lines = []
    for kind, rows in report.items():
        for stage, row in rows.items():
            verdict = row.get("degenerate")
            if not verdict:
                continue
            why = ("the same map whatever the video: it shows where the model always looks, not the action"
                   if "fixed" in verdict else "all of it on one cell: a peak, not a region")
            lines.append(f"{kind.capitalize()} attention at {stage} is {verdict} on {where} ({why}).")
    return lines
