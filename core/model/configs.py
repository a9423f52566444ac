"""Model configuration as plain frozen dataclasses, and the named variants of Table 4.

Every variant of the paper's ablation (Table 4) is the same code with switches set differently,
so the plain 3D ResNet baseline and the full ST-MANet share every weight layout they have in
common.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .inputs import INPUT_MODES

DIVERSITY_FORMS = ("paper", "received")

# Blocks per stage 2..5, and whether the depth uses bottleneck blocks (paper 3.1).
STAGE_BLOCKS = {
    10: ((1, 1, 1, 1), False),
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
    101: ((3, 4, 23, 3), True),
}


@dataclass(frozen=True)
class STMANetConfig:
    """Everything that decides the network's shape. JSON-serialisable (see `to_dict`)."""

    num_classes: int = 101
    depth: int = 50  # 10, 18, 34, 50 or 101
    base_width: int = 64  # stage-1 channels; stage widths are base * (1, 2, 4, 8) * expansion
    in_channels: int = 3
    # What the stem sees (core/model/inputs.py): "rgb" (the paper), "grey_diff" (frame
    # differences: motion, not the person's look) or "grey_diff_first" (plus each frame's
    # difference to the first: where held poses ended up); departures, docs/model.md.
    input_mode: str = "rgb"
    # Each stem input channel divided by its RMS over the clip (core/model/inputs.py): a departure.
    input_clip_norm: bool = False
    # Temporal size of the stem's 7x7 convolution: 7 is the paper's; 3 (as torchvision's r3d_18)
    # cuts the stem's cost, half of a narrow model's FLOPs, by 7/3 for CPU-sized models.
    stem_temporal_kernel: int = 7
    # Spatial stride of stage 5's first block: 2 is the paper's; 1 keeps stage 4's grid in stage 5
    # (the re-identification "last stride 1" trick, a departure, docs/model.md): at 64 px stage 5
    # then attends over 4x4 cells instead of 2x2, for about 4x stage 5's convolution cost.
    last_spatial_stride: int = 2
    # Temporal strides of the stem's max-pool and of stages 3, 4 and 5's first blocks: (2, 2, 2, 2)
    # is the paper's (16 frames reach stage 4 as 2 time steps and stage 5 as 1); 1 keeps the time
    # steps (as SlowFast and X3D do), so the deep stages and TDA still see the motion's course.
    # A departure, docs/model.md.
    temporal_strides: tuple[int, int, int, int] = (2, 2, 2, 2)
    use_tda: bool = True  # temporal-based deep aggregation, eqs. 1-3
    use_sda: bool = True  # spatial-based deep aggregation, eqs. 4-5
    multi_level_fusion: bool = True  # eq. 8: pooled stages 2-5 into the classifier
    diversity_loss: bool = True  # eqs. 6-7 inside eq. 9
    lambda_spatial: float = 0.01  # lambda1 (paper 4.5)
    lambda_temporal: float = 0.001  # lambda2 (paper 4.5)
    # Inner widths of the attention modules: C_i // reduction channels (see docs/model.md, FLOPs).
    tda_reduction: int = 8
    sda_reduction: int = 16
    # BN gamma of the modules' residual terms at init; 0 starts every stage as the plain backbone.
    residual_gamma_init: float = 0.0
    # Which maps eqs. 6-7 compare (core/model/losses.py): "paper" compares the full HWxHW (TxT)
    # matrices, which one-hot maps on fixed cells minimise without looking at the video;
    # "received" compares the attention each position (time step) receives, a distribution.
    diversity_form: str = "paper"
    # Pairs whose cosine similarity is at or below the margin add nothing (0: the paper's plain
    # sum), so the loss separates stages without rewarding ever more peaked maps.
    diversity_margin: float = 0.0
    # The grid eq. 6 aligns maps to: "last" (stage 5's, the paper) or "first" (stage 2's; received form only).
    diversity_grid: str = "last"
    # The deepest stage whose maps enter eqs. 6-7: 5 is the paper's theta (stages 2-5); 4 leaves
    # stage 5 out, so the loss cannot push the deepest stage off the region the others hold.
    diversity_last_stage: int = 5
    dropout: float = 0.5
    stage_heads: bool = True  # per-stage linear heads on detached features (paper Fig. 4)

    def __post_init__(self) -> None:
        object.__setattr__(self, "temporal_strides", tuple(self.temporal_strides))  # JSON gives a list
        if len(self.temporal_strides) != 4 or any(t not in (1, 2) for t in self.temporal_strides):
            raise ValueError(f"temporal_strides must be four of 1 or 2 (stem pool, stages 3-5), got {self.temporal_strides}")
        if self.depth not in STAGE_BLOCKS:
            raise ValueError(f"depth must be one of {sorted(STAGE_BLOCKS)}, got {self.depth}")
        if self.stem_temporal_kernel < 1 or self.stem_temporal_kernel % 2 == 0:
            raise ValueError(f"stem_temporal_kernel must be odd and >= 1, got {self.stem_temporal_kernel}")
        if self.last_spatial_stride not in (1, 2):
            raise ValueError(f"last_spatial_stride must be 1 or 2, got {self.last_spatial_stride}")
        if self.input_mode not in INPUT_MODES:
            raise ValueError(f"input_mode must be one of {', '.join(INPUT_MODES)}, got {self.input_mode!r}")
        if self.diversity_form not in DIVERSITY_FORMS:
            raise ValueError(f"diversity_form must be one of {DIVERSITY_FORMS}, got {self.diversity_form!r}")
        if self.diversity_grid not in ("last", "first"):
            raise ValueError(f"diversity_grid must be last or first, got {self.diversity_grid!r}")
        if self.diversity_grid == "first" and self.diversity_form != "received":
            raise ValueError("diversity_grid='first' needs diversity_form='received' (full maps are not upsampled)")
        if self.diversity_last_stage not in (3, 4, 5):
            raise ValueError(f"diversity_last_stage must be 3, 4 or 5, got {self.diversity_last_stage}")
        if not 0.0 <= self.diversity_margin < 1.0:
            raise ValueError(f"diversity_margin must be in [0, 1), got {self.diversity_margin}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")

    @property
    def bottleneck(self) -> bool:
        return STAGE_BLOCKS[self.depth][1]

    @property
    def stage_channels(self) -> tuple[int, int, int, int]:
        """C_2..C_5, the output channels of stages 2-5."""
        expansion = 4 if self.bottleneck else 1
        return tuple(self.base_width * m * expansion for m in (1, 2, 4, 8))  # type: ignore[return-value]

    @property
    def diversity_active(self) -> bool:
        return self.diversity_loss and (self.use_tda or self.use_sda)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "STMANetConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model config fields: {unknown}")
        return cls(**values)

    def replace(self, **changes) -> "STMANetConfig":
        return dataclasses.replace(self, **changes)


def _variant(depth: int, tda: bool, sda: bool, mf: bool, div: bool, **overrides) -> STMANetConfig:
    switches = dict(depth=depth, use_tda=tda, use_sda=sda, multi_level_fusion=mf, diversity_loss=div)
    return STMANetConfig(**{**switches, **overrides})


# Table 4 rows: backbone, +TDA, +SDA, +TDA+SDA, +MF, full ST-MANet.
def r3d_baseline(depth: int = 50, **kw) -> STMANetConfig:
    return _variant(depth, False, False, False, False, **kw)


def stmanet_tda(depth: int = 50, **kw) -> STMANetConfig:
    return _variant(depth, True, False, False, False, **kw)


def stmanet_sda(depth: int = 50, **kw) -> STMANetConfig:
    return _variant(depth, False, True, False, False, **kw)


def stmanet_tda_sda(depth: int = 50, **kw) -> STMANetConfig:
    return _variant(depth, True, True, False, False, **kw)


def stmanet_mf(depth: int = 50, **kw) -> STMANetConfig:
    return _variant(depth, False, False, True, False, **kw)


def stmanet(depth: int = 50, **kw) -> STMANetConfig:
    return _variant(depth, True, True, True, True, **kw)


TABLE4_ROWS = ("baseline", "tda", "sda", "tda_sda", "mf", "full")
_ROW_FACTORIES = {
    "baseline": r3d_baseline,
    "tda": stmanet_tda,
    "sda": stmanet_sda,
    "tda_sda": stmanet_tda_sda,
    "mf": stmanet_mf,
    "full": stmanet,
}


def config_by_name(name: str, **overrides) -> STMANetConfig:
    """`stmanet_r50`, `r3d50_baseline`, `stmanet_r18_tda`, `stmanet_r50_mf`, ...

    Names are `stmanet_r<depth>[_<row>]` for the ST-MANet rows of Table 4 and
    `r3d<depth>_baseline` for the plain backbone.
    """
    if name.startswith("r3d") and name.endswith("_baseline"):
        depth_text, row = name[3 : -len("_baseline")], "baseline"
    elif name.startswith("stmanet_r"):
        depth_text, _, row = name[len("stmanet_r") :].partition("_")
        row = row or "full"
    else:
        raise ValueError(f"unknown model name {name!r}; expected e.g. {', '.join(variant_names(50))}")
    if not depth_text.isdigit() or int(depth_text) not in STAGE_BLOCKS or row not in _ROW_FACTORIES:
        raise ValueError(f"unknown model name {name!r}; expected e.g. {', '.join(variant_names(50))}")
    return _ROW_FACTORIES[row](int(depth_text), **overrides)


def variant_names(depth: int = 50) -> list[str]:
    """The six Table 4 names for one depth, in the paper's row order."""
    return [f"r3d{depth}_baseline"] + [
        f"stmanet_r{depth}_{row}" if row != "full" else f"stmanet_r{depth}" for row in TABLE4_ROWS[1:]
    ]
