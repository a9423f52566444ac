"""Training: the paper's recipe by default (section 4.1), on CPU, one GPU, or many through torchrun.

    python -m core.train --data-layout list --data-root DIR --train-list train.txt --val-list val.txt \
        --model stmanet_r18 --base-width 32 --num-frames 16 --epochs 30 --run-dir runs/gestures

Defaults are the paper's: SGD momentum 0.9, batch 32, lr 0.01 x0.1 every 15 epochs, 90 epochs,
loss eq. 9. Every epoch ends with an atomic checkpoint (weights + config.json) and a resume state;
`--resume` continues a killed run from where it stopped with the same result as an uninterrupted
run: data order and augmentation are functions of (seed, epoch, index), and the RNG state that
dropout draws from is saved with the optimizer.

A checkpoint is written to `<name>.new/` (resume state first, config.json last) and swapped in by
two renames, so weights and resume state always come from the same step and a kill at any moment
leaves a complete folder: `checkpoint/`, or between the two renames `checkpoint.old/` and
`checkpoint.new/`, which the next start (or `--resume`) puts back in place. The CLI turns SIGTERM
(what clusters send before they kill) into a stop request: a checkpoint after the current step.

Why this module is long (~800 lines): TrainConfig (validated), the Trainer (restore,
train_epoch, validate, save over a RunState), the schedule/optimizer/mixup helpers and the CLI
share TrainConfig and the run folder's layout; the checkpoint swap lives in core.checkpoint.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from .capability import resolve_device, with_cpu_fallback
from .checkpoint import (
    CONFIG,
    CheckpointError,
    load_checkpoint,
    load_training_state,
    read_meta,
    recover_checkpoint_swap,
    replace_classifier,
    save_checkpoint,
    save_training_state,
    swap_in_checkpoint,
)
from .data.cache import FrameCache
from .data.clips import ClipConfig
from .data.dataset import VideoClipDataset, scan_videos
from .data.sources import read_dataset
from .evaluate import evaluate_model
from . import runtime
from .model import STMANetConfig, build_model, config_by_name, stmanet_loss
from .model.losses import LossTerms
from .pretext import ArrowOfTime
from .weight_average import WeightAverage

log = logging.getLogger(__name__)

Callback = Callable[[dict], None]


@dataclass
class TrainConfig:
    run_dir: str = "runs/run"
    # Data: see core.data.sources.read_dataset for what each layout reads.
    data_layout: str = "folder"  # folder | list | ucf101 | hmdb51 | diving48
    data_root: str = ""
    train_list: str | None = None  # list file, or Diving48 train JSON
    val_list: str | None = None  # list file, or Diving48 test JSON
    class_list: str | None = None  # class names file, UCF-101 classInd.txt, or Diving48 vocab JSON
    splits_dir: str | None = None  # UCF-101 / HMDB-51 split files
    split: int = 1
    val_fraction: float = 0.2  # folder layout only
    frame_cache: str | None = None  # folder for pre-decoded frames (small datasets, many epochs)
    cache_max_side: int = 320
    # Model
    model: str = "stmanet_r50"  # a Table 4 name, e.g. stmanet_r18, r3d18_baseline
    base_width: int | None = None  # None: the name's default (64)
    stem_temporal_kernel: int = 7  # 7: the paper's stem; 3 makes CPU-sized models much cheaper
    last_spatial_stride: int = 2  # 2: the paper; 1: stage 5 keeps stage 4's grid (a departure)
    # stem pool, stages 3-5: 2 halves time (the paper), 1 keeps it (a departure, STMANetConfig)
    temporal_strides: tuple[int, int, int, int] = (2, 2, 2, 2)
    dropout: float = 0.5
    init_checkpoint: str | None = None  # fine-tune from this checkpoint (classifier replaced if classes differ)
    freeze_stages: int = 0  # 1: freeze the stem; n: the stem and residual stages 2..n
    input_mode: str = "rgb"  # rgb (the paper) | grey_diff | grey_diff_first (core/model/inputs.py)
    input_clip_norm: bool = False  # each stem input channel divided by its RMS over the clip
    residual_gamma_init: float = 0.0  # BN gamma of TDA/SDA's residual terms at init (0: start as the backbone)
    diversity_loss: bool = True  # --no-diversity-loss: eqs. 6-7 off even for a model name that has them
    diversity_form: str = "paper"  # paper | received (core/model/losses.py)
    diversity_margin: float = 0.0  # pairs with cosine <= margin add nothing (0: the paper)
    diversity_grid: str = "last"  # last: stage 5's grid (eq. 6) | first: stage 2's (received form)
    diversity_last_stage: int = 5  # the deepest stage in eqs. 6-7 (5: the paper's stages 2-5)
    lambda_spatial: float = 0.01  # lambda1 of eq. 9 (paper 4.5)
    lambda_temporal: float = 0.001  # lambda2 of eq. 9 (paper 4.5)
    diversity_warmup_epochs: float = 0.0  # lambda1, lambda2 rise linearly from 0 over these epochs
    # Clips (paper 4.1)
    num_frames: int = 32
    stride: int = 2
    height: int = 112
    width: int = 112
    crop_scale: tuple[float, float] = (0.5, 1.0)
    aspect_jitter: tuple[float, float] = (1.0, 1.0)  # train crop aspect times a factor in this range (log-uniform)
    flip: bool = True
    flip_label_swap: tuple[tuple[str, str], ...] = ()
    motion_crop: bool = False  # crop around what moves (core.data.roi) before the clip transform
    motion_min_side: float = 0.35  # the motion box's smallest side, a fraction of the short side
    motion_fraction: float = 0.3  # what counts as moving: this fraction of the largest change
    sampling: str = "window"  # window (the paper) | segments: one frame per time segment | segment_pairs (core/data/clips.py)
    segment_phase: str = "independent"  # segments: independent (TSN) | shared (evenly spaced, as at test)
    time_scale: tuple[float, float] = (1.0, 1.0)  # segments: fraction of the video a training clip spans
    max_val_windows: int = 8
    # Optimisation
    epochs: int = 90
    batch_size: int = 32
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4  # the paper does not say; 1e-4 is the 3D-ResNet convention
    lr_schedule: str = "step"  # step (paper: x lr_gamma every lr_step epochs) | cosine
    lr_step: int = 15
    lr_gamma: float = 0.1
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    # mixup (Zhang et al. 2018): each batch blended with a shuffled copy of itself, weight ~ Beta(a, a),
    # and the loss blended alike; 0: off. A departure from the paper (it has none).
    mixup_alpha: float = 0.0
    # Self-supervised warm-up (core/pretext.py): the first N epochs learn whether a clip runs
    # backwards, labels unused; the lr schedule (warm-up included) restarts when the labels begin.
    pretext_epochs: int = 0
    # Decay per step of an exponential moving average of the weights (core/weight_average.py),
    # which validation, checkpoints and the shipped model use; 0: off (the paper).
    weight_average: float = 0.0
    grad_clip: float | None = None
    # System
    device: str = "auto"  # auto (CUDA, then Apple MPS, then CPU) | cpu | cuda | cuda:N | mps
    amp: str = "auto"  # auto (bf16/fp16 on CUDA, fp32 on CPU) | off | bf16 | fp16
    # CPU: malloc keeps freed blocks (core.runtime.keep_freed_memory): 1.3x ST-MANet-50 steps/s,
    # 1.08x for the gesture model, at 17-33 % more peak memory (bench/README.md); process-wide
    keep_freed_memory: bool = True
    num_workers: int = 2
    seed: int = 0
    resume: bool = False
    val_every: int = 1
    max_steps_per_epoch: int | None = None
    show_progress: bool = True
    data_source: str | None = None  # free text for the model card

    def __post_init__(self) -> None:
        """Ranges and choices, said in words; the clip and model configs check their own fields
        when the run builds them."""
        at_least_one = ("epochs", "batch_size", "num_frames", "stride", "height", "width", "val_every",
                        "max_val_windows", "cache_max_side")
        for name in at_least_one:
            if not getattr(self, name) >= 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (0 < self.lr and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number (e.g. 0.001), got {self.lr}")
        checks = (("weight_decay", self.weight_decay >= 0), ("momentum", 0 <= self.momentum < 1),
                  ("label_smoothing", 0 <= self.label_smoothing < 1), ("dropout", 0 <= self.dropout < 1),
                  ("warmup_epochs", self.warmup_epochs >= 0), ("mixup_alpha", self.mixup_alpha >= 0),
                  ("freeze_stages", 0 <= self.freeze_stages <= 5), ("num_workers", self.num_workers >= 0),
                  ("grad_clip", self.grad_clip is None or self.grad_clip > 0),
                  ("max_steps_per_epoch", self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1),
                  ("pretext_epochs", 0 <= self.pretext_epochs < self.epochs),
                  ("weight_average", 0 <= self.weight_average < 1))
        for name, ok in checks:
            if not ok:
                raise ValueError(f"{name} is out of range: {getattr(self, name)}")
        for name, choices in (("optimizer", ("sgd", "adamw")), ("lr_schedule", ("step", "cosine")),
                              ("amp", ("auto", "off", "bf16", "fp16"))):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}; got {getattr(self, name)!r}")
        if self.input_mode == "grey_pair_diff" and self.num_frames % 2:
            raise ValueError(f"input_mode grey_pair_diff reads frame pairs: num_frames must be even, got {self.num_frames}")

    def clip_config(self) -> ClipConfig:
        return ClipConfig(
            num_frames=self.num_frames,
            stride=self.stride,
            height=self.height,
            width=self.width,
            crop_scale=tuple(self.crop_scale),
            aspect_jitter=tuple(self.aspect_jitter),
            flip=self.flip,
            flip_label_swap=tuple(tuple(p) for p in self.flip_label_swap),
            max_windows=self.max_val_windows,
            motion_crop=self.motion_crop,
            motion_min_side=self.motion_min_side,
            motion_fraction=self.motion_fraction,
            sampling=self.sampling,
            segment_phase=self.segment_phase,
            time_scale=tuple(self.time_scale),
        )

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint_dir: Path | None  # the last checkpoint written (None if none was)
    best_dir: Path | None
    history: list[dict] = field(default_factory=list)  # one dict per epoch
    stopped: bool = False  # a stop request ended the run early
    error: str | None = None  # why the run stopped on its own (e.g. a non-finite loss)


class TrainingError(RuntimeError):
    pass


# ---------------------------------------------------------------------------- distributed setup
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; NCCL on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """The device `name` means here (`core.capability.resolve_device`: auto = CUDA, MPS, CPU)."""
    try:
        return resolve_device(name, local_rank)
    except ValueError as exc:
        raise TrainingError(f"{exc}; use --device cpu") from None


def trainable_device(model: torch.nn.Module, clip_cfg: ClipConfig, device: torch.device) -> torch.device:
    """`device`, or the CPU where `device` lacks an operator a training step needs (Apple MPS
    lacks some): found on one step of a copy of the model at batch 2, not in the middle of an epoch."""
    def step(dev: torch.device) -> None:
        probe = copy.deepcopy(model).to(dev).train()
        clip = torch.zeros(2, 3, clip_cfg.num_frames, clip_cfg.height, clip_cfg.width, device=dev)
        stmanet_loss(probe(clip), torch.zeros(2, dtype=torch.long, device=dev), probe.cfg).total.backward()

    return with_cpu_fallback(step, device)[1] if device.type == "mps" else device


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for fp32. CPU trains in fp32: torch 2.14.1's bf16 conv3d weight
    gradients are wrong when the temporal size is small (T=2 at stage 5)."""
    if device.type != "cuda" or amp == "off":
        if amp in ("bf16", "fp16") and device.type != "cuda":
            log.warning("amp=%s ignored on CPU: training runs in fp32 (bf16 conv3d gradients are wrong here)", amp)
        return None
    if amp == "fp16":
        return torch.float16
    if amp in ("bf16", "auto"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    raise TrainingError(f"unknown amp mode {amp!r}: use auto, off, bf16 or fp16")


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch, sharded across ranks, that can skip the batches a resumed
    run already trained on. The permutation depends only on (seed, epoch), never on history."""

    def __init__(self, size: int, seed: int, epoch: int, batch_size: int, skip_batches: int, d: Dist) -> None:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(size, generator=generator).tolist()
        per_rank = math.ceil(size / d.world)
        order = (order * math.ceil(per_rank * d.world / max(size, 1)))[: per_rank * d.world]  # pad evenly
        self.indices = order[d.rank :: d.world][skip_batches * batch_size :]

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


# ---------------------------------------------------------------------------- pieces of a run
def lr_at(cfg: TrainConfig, epoch_progress: float) -> float:
    """Learning rate at a fractional epoch: linear warm-up, then step (paper) or cosine decay;
    with a pretext phase, the schedule runs once over it and once over the labelled epochs."""
    epochs = cfg.epochs
    if cfg.pretext_epochs:
        in_pretext = epoch_progress < cfg.pretext_epochs
        epochs = cfg.pretext_epochs if in_pretext else cfg.epochs - cfg.pretext_epochs
        epoch_progress = epoch_progress if in_pretext else epoch_progress - cfg.pretext_epochs
    if cfg.warmup_epochs > 0 and epoch_progress < cfg.warmup_epochs:
        return cfg.lr * (epoch_progress + 1e-3) / cfg.warmup_epochs
    if cfg.lr_schedule == "cosine":
        span = max(epochs - cfg.warmup_epochs, 1e-9)
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(1.0, (epoch_progress - cfg.warmup_epochs) / span)))
    if cfg.lr_schedule == "step":
        return cfg.lr * cfg.lr_gamma ** int(epoch_progress // cfg.lr_step)
    raise TrainingError(f"unknown lr schedule {cfg.lr_schedule!r}: use step or cosine")


def mixup_pairing(cfg: TrainConfig, epoch: int, step: int, batch: int) -> tuple[float, torch.Tensor] | None:
    """(weight, permutation) of this step's mixup, or None when it is off. Drawn from (seed,
    epoch, step) alone, so a resumed run blends exactly as the uninterrupted one did."""
    if cfg.mixup_alpha <= 0 or batch < 2:
        return None
    rng = np.random.default_rng((cfg.seed, epoch, step, 0x6D78))
    return float(rng.beta(cfg.mixup_alpha, cfg.mixup_alpha)), torch.from_numpy(rng.permutation(batch))


def mixed_loss(out, labels: torch.Tensor, mix, model_cfg: STMANetConfig, cfg: TrainConfig, weight: float) -> LossTerms:
    """eq. 9 on (mixed) clips: with mixup, the label terms blended as the clips were; L_s and L_t
    do not depend on labels, so they come through unchanged."""
    terms = stmanet_loss(out, labels, model_cfg, cfg.label_smoothing, weight)
    if mix is None:
        return terms
    lam, perm = mix
    other = stmanet_loss(out, labels[perm.to(labels.device)], model_cfg, cfg.label_smoothing, weight)
    names = [f.name for f in dataclasses.fields(LossTerms)]
    return LossTerms(**{k: lam * getattr(terms, k) + (1 - lam) * getattr(other, k) for k in names})


def diversity_weight(cfg: TrainConfig, epoch_progress: float) -> float:
    """The factor on lambda1, lambda2 at a fractional epoch: a linear rise over the warm-up, then 1."""
    if cfg.diversity_warmup_epochs <= 0:
        return 1.0
    return min(1.0, epoch_progress / cfg.diversity_warmup_epochs)


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module, extra: list | None = None) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad] + list(extra or [])
    # No weight decay on BN and biases: decaying BN gammas fights the zero-init residual gates.
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused: one kernel over all parameters instead of ~10 ops per tensor (AdamW on CPU: 5-6x less
    # time per step, bench/README.md); MPS and older builds lack it, and then get the plain loop
    fused = {"fused": True} if _fused_optimizers(params) else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, **fused)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, **fused)
    raise TrainingError(f"unknown optimizer {cfg.optimizer!r}: use sgd or adamw")


def _fused_optimizers(params: list[torch.nn.Parameter]) -> bool:
    """Whether torch's fused SGD/AdamW kernels take these parameters (float, all on CPU or CUDA)."""
    if not params or not all(p.is_floating_point() for p in params):
        return False
    return {p.device.type for p in params} in ({"cpu"}, {"cuda"})


def freeze_early_stages(model: torch.nn.Module, n: int) -> None:
    """Freeze the stem (n >= 1) and residual stages 2..n (n up to 5); their BN statistics too."""
    frozen = ([model.stem] if n >= 1 else []) + list(model.stages[: max(0, n - 1)])
    for module in frozen:
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)


def build_run_model(cfg: TrainConfig, class_names: list[str]) -> tuple[torch.nn.Module, dict]:
    """A new model from a name, or a checkpoint to fine-tune with its classifier fitted to our classes."""
    if cfg.init_checkpoint:
        loaded = load_checkpoint(cfg.init_checkpoint)
        model = loaded.model
        if list(loaded.class_names) != list(class_names):
            model = replace_classifier(model, len(class_names))
        return model, {"init_checkpoint": str(cfg.init_checkpoint), "init_classes": list(loaded.class_names)}
    return build_model(run_model_config(cfg, len(class_names))), {}


def run_model_config(cfg: TrainConfig, num_classes: int) -> STMANetConfig:
    """The model a run trains: its init checkpoint's (classifier resized to num_classes), or the
    named model with the run's overrides. Reads no weights (memory estimates use it)."""
    if cfg.init_checkpoint:
        return STMANetConfig.from_dict(read_meta(Path(cfg.init_checkpoint))["model"]).replace(num_classes=num_classes)
    named = config_by_name(cfg.model)
    overrides = {"num_classes": num_classes, "dropout": cfg.dropout,
                 "stem_temporal_kernel": cfg.stem_temporal_kernel, "input_mode": cfg.input_mode,
                 "last_spatial_stride": cfg.last_spatial_stride,
                 "temporal_strides": tuple(cfg.temporal_strides),
                 "input_clip_norm": cfg.input_clip_norm,
                 "residual_gamma_init": cfg.residual_gamma_init,
                 "diversity_loss": named.diversity_loss and cfg.diversity_loss,
                 "diversity_form": cfg.diversity_form, "diversity_margin": cfg.diversity_margin,
                 "diversity_grid": cfg.diversity_grid, "lambda_spatial": cfg.lambda_spatial,
                 "diversity_last_stage": cfg.diversity_last_stage,
                 "lambda_temporal": cfg.lambda_temporal}
    if cfg.base_width:
        overrides["base_width"] = cfg.base_width
    return config_by_name(cfg.model, **overrides)


class MetricsLog:
    """metrics.jsonl: one JSON object per event, appended and flushed so a reader sees it at once."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def write(self, event: dict) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps({"time": time.time(), **event}) + "\n")


def _bare(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def drop_unreadable(video_lists: list, d: Dist, workers: int) -> tuple[list, list[str]]:
    """The start-up scan: probe every video once (rank 0, then shared), report the unreadable
    ones by path and leave them out, so none has to be skipped mid-epoch. Returns the lists
    without them, and "<path>: <reason>" per video left out."""
    bad: dict[str, str] = {}
    if d.main:
        for video_list in video_lists:
            if video_list.samples:
                bad.update({str(path): reason for path, reason in scan_videos(video_list, max(1, workers)).bad})
    if d.world > 1:
        shared = [bad]
        dist.broadcast_object_list(shared, src=0)
        bad = shared[0]
    for path, reason in bad.items():
        log.warning("dataset: unreadable video left out: %s (%s)", path, reason)
    kept = [dataclasses.replace(v, samples=[s for s in v.samples if str(s.path) not in bad]) for v in video_lists]
    if video_lists[0].samples and not kept[0].samples:
        raise TrainingError(f"none of the {len(video_lists[0].samples)} training videos can be read, e.g. "
                            f"{next(iter(bad.items()))}")
    return kept, [f"{path}: {reason}" for path, reason in bad.items()]


def _all_finite(model: torch.nn.Module) -> bool:
    """Weights can blow up on a step whose loss was still finite; never checkpoint them."""
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _any_rank(flag: bool, d: Dist) -> bool:
    """True on every rank when it is true on one: ranks must leave the loop at the same step."""
    if d.world <= 1:
        return flag
    t = torch.tensor([int(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _rng_states(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_states(state, device: torch.device) -> None:
    if isinstance(state, torch.Tensor):  # resume states written before CUDA RNG was saved
        state = {"cpu": state}
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# ---------------------------------------------------------------------------- the loop
@dataclass
class RunState:
    """Where a run is: what a resume restores and every checkpoint saves (training_state.pt)."""

    epoch: int = 0  # the epoch to train next (0-based)
    step_in_epoch: int = 0  # steps of it already trained (a run stopped mid-epoch)
    best_acc: float = -1.0
    history: list = field(default_factory=list)  # one dict per finished epoch
    partial: tuple[int, int] = (0, 0)  # (correct, seen) of the trained part of a stopped epoch
    rng: dict | None = None  # RNG streams of a run stopped mid-epoch: it continues them exactly
    optimizer: dict | None = None
    scaler: dict | None = None
    pretext_head: dict | None = None  # the arrow-of-time head's weights (core/pretext.py)
    # With a weight average the checkpoint holds the average; the optimizer's live weights are here.
    live_weights: dict | None = None
    average_updates: int = 0

    def saved(self) -> dict:
        return {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "optimizer": self.optimizer,
                "scaler": self.scaler, "torch_rng": self.rng, "partial_correct_seen": self.partial,
                "best_acc": self.best_acc, "history": self.history, "pretext_head": self.pretext_head,
                "live_weights": self.live_weights, "average_updates": self.average_updates}

    @classmethod
    def from_saved(cls, state: dict) -> "RunState":
        return cls(state["epoch"], state["step_in_epoch"], state.get("best_acc", -1.0), state.get("history", []),
                   tuple(state.get("partial_correct_seen", (0, 0))), state.get("torch_rng"), state["optimizer"],
                   state.get("scaler"), state.get("pretext_head"), state.get("live_weights"),
                   state.get("average_updates", 0))


class Trainer:
    """One run: `restore` (a resume), then per epoch `train_epoch`, `validate`, `save`; `run`
    does them all and returns a TrainResult. `callback` receives step/epoch/done event dicts;
    setting `stop_event` ends the run after the current step with a checkpoint."""

    def __init__(self, cfg: TrainConfig, callback: Callback | None = None,
                 stop_event: threading.Event | None = None) -> None:
        self.cfg, self.stop_event = cfg, stop_event
        device = pick_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
        self.d = d = setup_distributed(device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        elif cfg.keep_freed_memory:
            runtime.keep_freed_memory()
        self.run_dir = Path(cfg.run_dir)
        self.ckpt_dir, self.best_dir = self.run_dir / "checkpoint", self.run_dir / "best"
        if d.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            recover_checkpoint_swap(self.ckpt_dir)
            recover_checkpoint_swap(self.best_dir)
        if d.world > 1:
            dist.barrier()  # other ranks read the checkpoint only once rank 0 has repaired it
        self.emit = _emitter(callback, MetricsLog(self.run_dir / "metrics.jsonl", d.main), d)

        train_list, val_list = read_dataset(cfg)
        self.class_names = list(train_list.class_names)
        for problem in getattr(train_list, "problems", []) + getattr(val_list, "problems", []):
            log.warning("dataset: %s", problem)
        (train_list, val_list), self.unreadable = drop_unreadable([train_list, val_list], d, cfg.num_workers)
        self.clip_cfg = cfg.clip_config()
        cache = FrameCache(cfg.frame_cache, max_side=cfg.cache_max_side) if cfg.frame_cache else None

        torch.manual_seed(cfg.seed)
        model, init_info = build_run_model(cfg, self.class_names)
        self.model_cfg: STMANetConfig = model.cfg
        self.state = RunState()
        if cfg.resume and (self.ckpt_dir / CONFIG).exists():
            model = self.restore()
        self.device = device = trainable_device(model, self.clip_cfg, device)
        self.model = model.to(device).train()
        self.average = None
        if cfg.weight_average:  # a resumed checkpoint holds the average, its training state the live weights
            self.average = WeightAverage(model, cfg.weight_average)
            if self.state.live_weights is not None:
                model.load_state_dict(self.state.live_weights)
                self.average.updates = self.state.average_updates
        if cfg.freeze_stages:
            freeze_early_stages(model, cfg.freeze_stages)
        self.pretext = None
        if cfg.pretext_epochs:
            self.pretext = ArrowOfTime(model.classifier.in_features, device, cfg.seed)
            if self.state.pretext_head is not None:
                self.pretext.head.load_state_dict(self.state.pretext_head)
        self.optimizer = self.optimizer_for(self.state.epoch)
        if self.state.optimizer is not None:
            self.optimizer.load_state_dict(self.state.optimizer)
        self.amp_dtype = autocast_dtype(cfg.amp, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        if self.state.scaler:
            self.scaler.load_state_dict(self.state.scaler)
        self.train_model = model if d.world <= 1 else torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=False)

        self.dataset = VideoClipDataset(train_list, self.clip_cfg, train=True, seed=cfg.seed, frame_cache=cache)
        self.val_dataset = (VideoClipDataset(val_list, self.clip_cfg, train=False, seed=cfg.seed, frame_cache=cache)
                            if val_list.samples else None)
        self.steps_per_epoch = math.ceil(math.ceil(len(self.dataset) / d.world) / cfg.batch_size)
        if cfg.max_steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.max_steps_per_epoch)
        self.meta = {"training": {**cfg.to_dict(), **init_info},
                     "data_source": cfg.data_source or f"{cfg.data_layout}:{cfg.data_root}"}
        self.videos = (len(train_list.samples), len(val_list.samples))
        self.stopped, self.error = False, None
        self.last_saved = self.ckpt_dir if (self.ckpt_dir / CONFIG).exists() else None
        self.train_seconds, self.done_steps = 0.0, 0  # training steps only (not validation): for rate and ETA
        self.total_steps = self.steps_per_epoch * (cfg.epochs - self.state.epoch) - self.state.step_in_epoch

    def optimizer_for(self, epoch: int) -> torch.optim.Optimizer:
        """A pretext epoch's optimizer also trains the direction head; the labelled phase gets a
        fresh one, as its schedule restarts (and torch's fused SGD cannot take parameters whose
        first gradient comes after others have momentum)."""
        head = self.pretext is not None and epoch < self.cfg.pretext_epochs
        return make_optimizer(self.cfg, self.model, list(self.pretext.head.parameters()) if head else None)

    def restore(self) -> torch.nn.Module:
        """The run's own model and its RunState from the last checkpoint; a changed flag or
        dataset must not resume silently."""
        saved = load_training_state(self.ckpt_dir)
        try:
            model = load_checkpoint(self.ckpt_dir, expected_classes=self.class_names,
                                    expected_model=self.model_cfg).model
        except CheckpointError as exc:
            raise TrainingError(f"cannot resume {self.ckpt_dir} with these settings: {exc}; resume with the run's "
                                f"own flags and data, or start a new --run-dir") from None
        self.state = RunState.from_saved(saved)
        log.info("resuming %s at epoch %d step %d", self.run_dir, self.state.epoch, self.state.step_in_epoch)
        return model

    def run(self) -> TrainResult:
        cfg, d, state = self.cfg, self.d, self.state
        if d.main:
            self.emit({"event": "start", "epochs": cfg.epochs, "steps_per_epoch": self.steps_per_epoch,
                       "classes": len(self.class_names), "train_videos": self.videos[0],
                       "val_videos": self.videos[1], "unreadable": self.unreadable, "device": str(self.device),
                       "world_size": d.world,
                       "resumed_at": [state.epoch, state.step_in_epoch] if cfg.resume else None})
        for epoch in range(state.epoch, cfg.epochs):
            step, correct, seen, started = self.train_epoch(epoch)
            if not self.error and not _all_finite(_bare(self.train_model)):
                self.error = (f"weights became non-finite in epoch {epoch + 1}: stopped; the last good checkpoint "
                              f"is kept ({self.last_saved or 'none written yet'}); lower the lr or set --grad-clip")
            if self.error:
                break
            epoch_done = not self.stopped
            labelled = epoch >= cfg.pretext_epochs  # pretext epochs' weights have no class head trained yet
            accuracy = "train_acc" if labelled else "pretext_acc"  # of the classes, or of the direction
            stats = {"epoch": epoch + 1, accuracy: correct / max(seen, 1), "lr": lr_at(cfg, epoch),
                     "epoch_time_s": time.time() - started}
            if epoch_done and labelled and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
                stats.update(self.validate())
            if epoch_done:
                state.history.append(stats)
            if epoch_done and epoch + 1 == cfg.pretext_epochs:
                self.optimizer = self.optimizer_for(epoch + 1)
                if self.average is not None:
                    self.average.reset(_bare(self.train_model))
            if d.main:
                self.save(epoch, epoch_done, step, correct, seen, stats)
            if d.world > 1:
                dist.barrier()
            if self.stopped:
                break
        result = TrainResult(self.run_dir, self.last_saved,
                             self.best_dir if (self.best_dir / CONFIG).exists() else None,
                             state.history, self.stopped, self.error)
        if d.main:
            self.emit({"event": "done", "stopped": self.stopped, "error": self.error,
                       "checkpoint_dir": str(self.last_saved) if self.last_saved else None})
        if self.error:
            log.error(self.error)
        return result

    def train_epoch(self, epoch: int) -> tuple[int, int, int, float]:
        """Train `epoch` (from state.step_in_epoch on a resume) until its end, a stop request or a
        non-finite loss; returns (steps done, correct, seen, start time)."""
        cfg, d, state, device = self.cfg, self.d, self.state, self.device
        # Dropout draws from the global RNG: reseed per epoch so an epoch does not depend on history.
        torch.manual_seed(cfg.seed * 7919 + epoch)
        if state.rng is not None:  # a run stopped mid-epoch continues the exact RNG stream
            _set_rng_states(state.rng, device)
            state.rng = None
        skip = state.step_in_epoch
        self.dataset.set_epoch(epoch)
        sampler = EpochSampler(len(self.dataset), cfg.seed, epoch, cfg.batch_size, skip, d)
        # Its own generator: a loader draws its workers' base seed from the global RNG otherwise,
        # which would shift the dropout stream of a run resumed mid-epoch by one draw.
        loader = DataLoader(
            self.dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
            drop_last=False, pin_memory=device.type == "cuda", persistent_workers=False,
            generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch),
        )
        self.train_model.train()
        if cfg.freeze_stages:
            freeze_early_stages(_bare(self.train_model), cfg.freeze_stages)
        correct, seen = state.partial if skip else (0, 0)
        state.partial, state.step_in_epoch = (0, 0), 0
        step = skip
        bar = _progress(cfg, d, self.steps_per_epoch, step, epoch)
        started = t_step = time.time()
        for clips, labels in (loader if step < self.steps_per_epoch else ()):
            lr = lr_at(cfg, epoch + step / self.steps_per_epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            clips, labels = clips.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            pretext = self.pretext is not None and epoch < cfg.pretext_epochs
            mix = None if pretext else mixup_pairing(cfg, epoch, step, len(labels))
            if pretext:
                clips, labels = self.pretext.batch(clips, epoch, step)
            if mix is not None:
                clips = mix[0] * clips + (1 - mix[0]) * clips[mix[1].to(device)]
            with torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                out = self.train_model(clips)
            weight = diversity_weight(cfg, epoch + step / self.steps_per_epoch)
            if pretext:
                terms, logits = self.pretext.loss(out, labels, self.model_cfg, weight)
            else:
                terms, logits = mixed_loss(out, labels, mix, self.model_cfg, cfg, weight), out.logits
            bad_loss = not bool(torch.isfinite(terms.total))
            if _any_rank(bad_loss, d):  # all ranks leave together, or DDP hangs in the next all-reduce
                what = f"loss became {float(terms.total.detach())}" if bad_loss else "another rank's loss became non-finite"
                self.error = (f"{what} at epoch {epoch + 1} step {step + 1}: stopped; the last good checkpoint is "
                              f"kept ({self.last_saved or 'none written yet'}); lower the lr or set --grad-clip")
                break
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(terms.total).backward()
            if pretext:
                self.pretext.average_gradients(d.world)
            if cfg.grad_clip:
                self.scaler.unscale_(self.optimizer)
                clipped = [p for group in self.optimizer.param_groups for p in group["params"]]
                torch.nn.utils.clip_grad_norm_(clipped, cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.average is not None:
                self.average.update(_bare(self.train_model))
            step += 1
            self.done_steps += 1
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
            self.train_seconds += time.time() - t_step
            t_step = time.time()
            self._step_event(epoch, step, lr, terms, bar, "pretext" if pretext else "labels")
            if _stop_requested(self.stop_event, d):
                self.stopped = True
                break
            if step >= self.steps_per_epoch:  # max_steps_per_epoch: do not load a batch we will not train on
                break
        if bar is not None:
            bar.close()
        return step, correct, seen, started

    def _step_event(self, epoch: int, step: int, lr: float, terms, bar, phase: str) -> None:
        elapsed = self.train_seconds
        rate = self.done_steps * self.cfg.batch_size * self.d.world / max(elapsed, 1e-9)
        losses = terms.as_floats()
        event = {"event": "step", "phase": phase, "epoch": epoch + 1, "step": step,
                 "steps_per_epoch": self.steps_per_epoch,
                 **losses, "loss": losses["total"], "lr": lr, "clips_per_s": rate,
                 "eta_s": (self.total_steps - self.done_steps) * elapsed / max(self.done_steps, 1)}
        self.emit(event)
        if bar is not None:
            bar.set_postfix(loss=f"{event['loss']:.3f}", lr=f"{lr:.2g}", clips_s=f"{rate:.1f}")
            bar.update(1)

    def validate(self) -> dict:
        """Held-out metrics of the current weights (rank 0; other ranks get none)."""
        out = {}
        if self.val_dataset is not None and self.d.main:
            with self.averaged():
                metrics = evaluate_model(_bare(self.train_model), self.val_dataset, self.device, self.class_names,
                                         num_workers=self.cfg.num_workers, with_diversity=True)
            out = {"val_acc": metrics["top1"], "val_top5": metrics["top5"],
                   "val_mean_class_acc": metrics["mean_class_accuracy"], "val_stage_top1": metrics["stage_top1"],
                   "diversity_spatial": metrics.get("diversity_spatial"),
                   "diversity_temporal": metrics.get("diversity_temporal"),
                   "attention_quality": metrics.get("attention_quality")}
        self.train_model.train()
        return out

    def averaged(self):
        """A block in which the model holds the weights a run validates and saves."""
        return self.average.swapped_in(_bare(self.train_model)) if self.average else contextlib.nullcontext()

    def save(self, epoch: int, epoch_done: bool, step: int, correct: int, seen: int, stats: dict) -> None:
        """The run checkpoint (weights + RunState, swapped in whole), and `best/` when validation improved."""
        state = self.state
        improved = epoch_done and stats.get("val_acc", -1.0) > state.best_acc
        if epoch_done:
            state.best_acc = max(state.best_acc, stats.get("val_acc", -1.0))
        state.epoch, state.step_in_epoch = (epoch + 1, 0) if epoch_done else (epoch, step)
        state.optimizer = self.optimizer.state_dict()
        state.pretext_head = self.pretext.head.state_dict() if self.pretext else None
        state.scaler = self.scaler.state_dict() if self.scaler.is_enabled() else None
        state.live_weights = _bare(self.train_model).state_dict() if self.average else None
        state.average_updates = self.average.updates if self.average else 0
        state.rng = None if epoch_done else _rng_states(self.device)
        state.partial = (0, 0) if epoch_done else (correct, seen)
        saved = state.saved()
        state.rng, state.partial = (None, (0, 0)) if epoch_done else (state.rng, state.partial)
        card_metrics = {k: v for k, v in (state.history[-1] if state.history else {}).items() if k != "val_stage_top1"}

        def write(folder: Path, epochs_completed: int, resume: dict | None = None) -> None:
            if resume is not None:
                save_training_state(folder, resume)  # before config.json, which marks the folder complete
            with self.averaged():
                save_checkpoint(folder, _bare(self.train_model), self.clip_cfg, self.class_names, metrics=card_metrics,
                                training={**self.meta["training"], "epochs_completed": epochs_completed,
                                          "step_in_epoch": saved["step_in_epoch"]},
                                data_source=self.meta["data_source"])

        swap_in_checkpoint(self.ckpt_dir, lambda f: write(f, saved["epoch"], saved))
        self.last_saved = self.ckpt_dir
        if improved:
            swap_in_checkpoint(self.best_dir, lambda f: write(f, epoch + 1))
        self.emit({"event": "epoch", **stats, "num_classes": len(self.class_names),
                   "checkpoint_dir": str(self.ckpt_dir), "stopped": self.stopped})


def train(cfg: TrainConfig, callback: Callback | None = None, stop_event: threading.Event | None = None) -> TrainResult:
    """Run (or resume) training: `Trainer(cfg, callback, stop_event).run()`."""
    return Trainer(cfg, callback, stop_event).run()


def _emitter(callback: Callback | None, metrics: MetricsLog, d: Dist) -> Callback:
    def emit(event: dict) -> None:
        if not d.main:
            return
        metrics.write(event)
        if callback is not None:
            try:
                callback(event)
            except Exception:  # a broken UI callback must not kill a long run
                log.exception("training callback failed")

    return emit


def _stop_requested(stop_event: threading.Event | None, d: Dist) -> bool:
    # every rank stops at the same step, or DDP would hang
    return _any_rank(bool(stop_event is not None and stop_event.is_set()), d)


def _progress(cfg: TrainConfig, d: Dist, total: int, initial: int, epoch: int):
    if not (cfg.show_progress and d.main):
        return None
    return tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)


# ---------------------------------------------------------------------------- command line
def build_parser(cls=TrainConfig, description: str = __doc__) -> argparse.ArgumentParser:
    """One --flag per dataclass field, typed from its default."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif f.name in ("crop_scale", "aspect_jitter", "time_scale"):
            parser.add_argument(flag, type=float, nargs=2, default=default)
        elif f.name == "temporal_strides":
            parser.add_argument(flag, type=int, nargs=4, default=default, metavar="S",
                                help="temporal strides of the stem pool and stages 3, 4, 5 (1 or 2 each)")
        elif f.name == "flip_label_swap":
            parser.add_argument(flag, nargs="*", default=[], metavar="A:B",
                                help="class pairs swapped by a horizontal flip, e.g. left:right")
        else:
            kind = type(default) if default is not None else str
            if f.name in ("base_width", "max_steps_per_epoch"):
                kind = int
            elif f.name == "grad_clip":
                kind = float
            parser.add_argument(flag, type=kind, default=default)
    return parser


def config_from_args(args: argparse.Namespace, cls=TrainConfig):
    values = vars(args).copy()
    if "flip_label_swap" in values:
        values["flip_label_swap"] = tuple(tuple(p.split(":", 1)) for p in values["flip_label_swap"])
    for name in ("crop_scale", "aspect_jitter", "time_scale", "temporal_strides"):
        if name in values:
            values[name] = tuple(values[name])
    return cls(**values)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = config_from_args(build_parser().parse_args(argv))
    stop = threading.Event()
    previous = _on_sigterm(stop)
    try:
        result = train(cfg, stop_event=stop)
    except (TrainingError, ValueError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if dist.is_initialized():
            dist.destroy_process_group()
    if result.error:
        return 3
    last = result.history[-1] if result.history else {}
    print(json.dumps({"checkpoint": str(result.checkpoint_dir), "best": str(result.best_dir),
                      "stopped": result.stopped, **last}))
    return 128 + signal.SIGTERM if result.stopped else 0  # 143: stopped on SIGTERM, --resume continues


def _on_sigterm(stop: threading.Event):
    """SIGTERM (a cluster's notice before it kills) ends the run after the current step with a
    checkpoint. Returns the previous handler, or None off the main thread (no signals there)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        log.warning("SIGTERM: stopping after the current step with a checkpoint (--resume continues)")
        stop.set()

    return signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    raise SystemExit(main())
