"""Predict the action in a video with a checkpoint, and optionally keep the attention maps.

Test protocol (paper 4.1, design section 7): the video is cut into consecutive windows of
num_frames * stride frames (`clips.test_windows`), every stride-th frame kept, centre crop
(`clips.test_transform`, with the motion crop when the clip config asks); the video's probabilities are the mean of the windows' softmaxes.
Frames are decoded once even when windows share them (one `read_frames` call over the unique
indices), at the smallest size that does not upsample the crop (`clips.decode_max_side`), which
is also what evaluation uses, so the app and the reported accuracy see the same input.

Attention, per stage 2-5 and per window (design section 9):
  spatial  (W, H_i, W_i)  attention each position receives: A_s averaged over its queries
  temporal (W, T_i, T_i)  A_t itself (rows: queries, columns: keys)
  received (W, T_i)       attention each time step receives: A_t's column mean
and the 4x4 stage-by-stage cosine similarities of the aligned maps (what eqs. 6-7 push down).

CLI: python -m core.predict VIDEO --checkpoint DIR [--topk 5] [--json] [--attention]

Why this module is long (~460 lines): the Predictor, its result type with JSON output, and the
CLI; the map collection (collect_maps) belongs with them.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checkpoint import LoadedCheckpoint, load_checkpoint, load_familiarity
from .data.clips import ClipConfig, decode_max_side, test_batch, test_crop_box, test_windows
from .data.video import probe_video, read_frames
from .model import forward_flops
from .model.inference import optimize_for_inference
from .model.kernels import prepare_clip
from .attention_quality import describe, video_quality
from .familiarity import scores as familiarity_scores, video_feature
from .capability import DEVICE_CHOICES, bf16_skip_reason, bf16_supported, resolve_device, with_cpu_fallback
from .model.losses import stage_similarity
from .runtime import intra_op_threads, keep_freed_memory

PRECISIONS = ("fp32", "bf16")
log = logging.getLogger(__name__)


@dataclass
class StageMaps:
    """One stage's attention over all windows; a field is None when the model lacks that module."""

    stage: int  # 2..5
    shape: tuple[int, int, int]  # (T_i, H_i, W_i) of the stage's feature map
    spatial: np.ndarray | None  # (W, H_i, W_i) attention each position receives
    temporal: np.ndarray | None  # (W, T_i, T_i) the temporal attention matrix
    received: np.ndarray | None  # (W, T_i) attention each time step receives (column mean)


@dataclass
class Prediction:
    topk: list[tuple[str, float]]  # best first
    probs: np.ndarray  # (K,) mean of the windows' softmaxes
    class_names: list[str]
    window_probs: np.ndarray  # (W, K)
    window_times: list[tuple[float, float]]  # (start_s, end_s) of each window, for a timeline
    window_indices: list[np.ndarray]  # W x (num_frames,) source frame indices fed to the model
    frames: np.ndarray  # (num_frames, h, w, 3) uint8: the crop the model saw (clips.test_view), window `frames_window`
    frames_window: int  # the window most confident in the top class (the one `frames` shows)
    fps: float  # of the source video (frames / fps = seconds)
    num_frames_used: int  # source frames considered (after max_seconds)
    # where that crop lies: (y0, x0, y1, x1) in the pixels of `context_frame`, the window's middle
    # frame whole (as decoded), so a picture can show what the model did not see
    view_box: tuple[int, int, int, int] | None = None
    context_frame: np.ndarray | None = None
    attention: list[StageMaps] | None = None  # stages 2..5, when asked for
    diversity: dict[str, np.ndarray | None] | None = None  # {"spatial": (4,4), "temporal": (4,4)}, window mean
    # This video's attention quality per stage (core.attention_quality: concentration, lift) and
    # plain sentences for degenerate maps (this video's one-hot ones, the checkpoint's fixed ones).
    attention_quality: dict | None = None
    attention_warnings: list[str] = field(default_factory=list)
    # {"score", "threshold", "familiar"}: whether the video looks like the training videos in the
    # model's feature space (core.familiarity); None for a checkpoint without that reference
    familiarity: dict | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds: decode, preprocess, model, maps, total
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.topk[0][0]

    def to_dict(self, with_maps: bool = False) -> dict:
        """JSON-ready summary; with_maps adds the attention maps as nested lists."""
        out = {
            "topk": [[name, round(p, 6)] for name, p in self.topk],
            "probs": dict(zip(self.class_names, _rounded(self.probs, 6))),
            "window_probs": _rounded(self.window_probs, 6),
            "window_times": [[round(a, 3), round(b, 3)] for a, b in self.window_times],
            "frames_window": self.frames_window,
            "view_box": None if self.view_box is None else [int(v) for v in self.view_box],
            "familiarity": self.familiarity,
            "fps": self.fps,
            "num_frames_used": self.num_frames_used,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "notes": self.notes,
        }
        if self.diversity is not None:
            out["diversity"] = {k: _rounded(v, 4) for k, v in self.diversity.items()}
        if self.attention_quality is not None:
            out["attention_quality"] = self.attention_quality
            out["attention_warnings"] = list(self.attention_warnings)
        if with_maps and self.attention is not None:
            out["attention"] = [
                {
                    "stage": s.stage,
                    "shape": list(s.shape),
                    "spatial": _rounded(s.spatial, 5),
                    "temporal": _rounded(s.temporal, 5),
                    "received": _rounded(s.received, 5),
                }
                for s in self.attention
            ]
        return out


UNFAMILIAR = ("this video does not look like the videos this model was trained on (its features are far from "
              "theirs): the classes below are the nearest of the ones it knows, not a recognition")


def _rounded(values: np.ndarray | None, digits: int):
    """float64 before rounding, so JSON shows 0.3557 and not 0.35570001602172852."""
    return None if values is None else np.round(np.asarray(values, dtype=np.float64), digits).tolist()


class Predictor:
    """Holds one loaded model; `predict` may be called for many videos.

    precision "bf16" runs the model under bfloat16 autocast (inference only; faster on CPUs with
    AVX512-BF16/AMX and on recent GPUs); it falls back to fp32, with a note, where unsupported.
    optimize=True (default) runs `core.model.inference.optimize_for_inference`'s copy of the
    model (BN folded, oneDNN convolutions with fused ReLU/sums, channels_last on CPU): the same
    function to fp32 rounding, ~1.5x faster on CPU (bench/latency.py). The checkpoint's own
    model (`self.checkpoint.model`) is left as loaded.
    threads: intra-op threads for the model while `predict` runs (None: torch's setting). On a
    CPU shared with other busy processes, 1 avoids OpenMP threads waiting at every layer for a
    descheduled sibling (3-4x less time on the loaded 2-core bench machine, bench/README.md).
    Set and restored around the model and map work of each call, in the calling thread (OpenMP's
    setting is per thread).
    keep_memory: on CPU, `core.runtime.keep_freed_memory()` (process-wide): malloc keeps freed
    blocks for the next forward instead of page-faulting them back in (up to 12 % of a forward).
    """

    def __init__(self, checkpoint: str | Path | LoadedCheckpoint, device=None, precision: str = "fp32",
                 optimize: bool = True, threads: int | None = None, keep_memory: bool = True) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {threads}")
        self.threads = threads
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.device = resolve_device(device)
        if keep_memory and self.device.type == "cpu":
            keep_freed_memory()
        loaded = checkpoint if isinstance(checkpoint, LoadedCheckpoint) else load_checkpoint(checkpoint)
        self.checkpoint = loaded
        model = loaded.model.to(self.device).eval()
        self.model = optimize_for_inference(model) if optimize else model
        self.clip_cfg: ClipConfig = loaded.clip_cfg
        self.class_names = list(loaded.class_names)
        # training-video features and threshold (core.familiarity), when the checkpoint has them
        self.familiarity = load_familiarity(loaded.path)
        why_not = None if precision == "fp32" else bf16_skip_reason(self.device)
        self.precision = "fp32" if why_not else precision
        self._precision_note = f"bf16 not used ({why_not}): ran in fp32" if why_not else None
        self._device_notes: list[str] = []  # e.g. an MPS fallback to the CPU, said in every later result

    def facts(self) -> dict:
        """What this model is, for a page or a report: classes, model and clip configs, parameters,
        GFLOPs of one clip's forward (counted, not timed), and the checkpoint's metrics, training
        settings and data source as saved."""
        loaded = self.checkpoint
        meta = loaded.meta or {}
        clip = self.clip_cfg
        return {
            "classes": list(self.class_names),
            "model": loaded.model_cfg.to_dict(),
            "clip": clip.to_dict(),
            "params": sum(p.numel() for p in loaded.model.parameters()),
            "gflops": forward_flops(loaded.model_cfg, clip.num_frames, clip.height, clip.width) / 1e9,
            "metrics": dict(meta.get("metrics") or {}),
            "training": dict(meta.get("training") or {}),
            "data_source": meta.get("data_source"),
        }

    # ------------------------------------------------------------------ entry points

    def predict(
        self,
        video_path: str | Path,
        topk: int = 5,
        with_attention: bool = False,
        max_seconds: float | None = None,
        batch_windows: int = 8,
    ) -> Prediction:
        """Classify one video file. Raises VideoError (a ValueError) for a file that cannot be
        read, ValueError for bad arguments."""
        _check_args(topk, max_seconds, batch_windows)
        start = time.perf_counter()
        info = probe_video(video_path)
        notes = []
        if info.fps_assumed:
            notes.append(f"the file gives no frame rate: {info.fps:g} fps assumed for the timeline")
        n = info.num_frames
        if max_seconds is not None and n > max_seconds * info.fps:
            n = max(1, int(max_seconds * info.fps))
            notes.append(f"decoded only the first {max_seconds:g} s ({n} of {info.num_frames} frames; max_seconds cap)")
        windows = test_windows(n, self.clip_cfg)
        unique, inverse = np.unique(np.concatenate(windows), return_inverse=True)
        side = decode_max_side(info.width, info.height, self.clip_cfg, train=False)
        short: list[str] = []
        decoded = read_frames(video_path, unique, max_side=side, on_short=short.append)  # each frame once: (U, h, w, 3)
        if short:  # a truncated file, or a header that promises more frames than there are
            log.warning("%s", short[0])
            notes.append(f"the file ends before the {info.num_frames} frames its header promises (truncated or "
                         "corrupt?): the last decoded frame stands in for the missing ones")
        t = self.clip_cfg.num_frames
        per_window = [inverse[k * t : (k + 1) * t] for k in range(len(windows))]  # rows of `decoded`
        decode_s = time.perf_counter() - start
        return self._run(decoded, per_window, windows, n, info.fps, topk, with_attention, batch_windows,
                         notes, {"decode": decode_s}, start)

    def predict_frames(
        self,
        frames: np.ndarray,
        fps: float = 25.0,
        topk: int = 5,
        with_attention: bool = False,
        batch_windows: int = 8,
    ) -> Prediction:
        """Classify frames already in memory, (N, H, W, 3) uint8 RGB (a webcam recording, a GIF)."""
        _check_args(topk, None, batch_windows)
        if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be a (N, H, W, 3) uint8 array, got {getattr(frames, 'shape', type(frames))}")
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        start = time.perf_counter()
        windows = test_windows(len(frames), self.clip_cfg)
        return self._run(frames, windows, windows, len(frames), fps, topk, with_attention, batch_windows,
                         [], {"decode": 0.0}, start)

    # ------------------------------------------------------------------ the work

    def _run(self, *args):
        with intra_op_threads(self.threads):  # the forward and the maps' torch ops
            return self._windows_to_prediction(*args)

    def _windows_to_prediction(self, decoded, per_window, windows, n, fps, topk, with_attention, batch_windows,
                               notes, timings, start):
        notes = notes + _window_notes(n, windows, self.clip_cfg)
        if self._precision_note:
            notes.append(self._precision_note)
        probs_list, features, raw_maps, batches, model_s, prep_s = [], [], [], [], 0.0, 0.0
        for first, last in _balanced_batches(len(windows), batch_windows):
            tick = time.perf_counter()
            rows = per_window[first:last]
            batch = test_batch(decoded, rows, self.clip_cfg)  # (B, 3, T, H, W)
            prep_s += time.perf_counter() - tick
            tick = time.perf_counter()
            output = self._forward(batch, with_attention)
            probs_list.append(output.logits.float().softmax(-1).cpu())  # (B, K)
            features.append(output.features.float().cpu())  # (B, D)
            model_s += time.perf_counter() - tick
            if with_attention:
                raw_maps.append(output)
                batches.append(batch)
        notes += [note for note in self._device_notes if note not in notes]
        window_probs = torch.cat(probs_list).numpy()  # (W, K)
        probs = window_probs.mean(0)  # (K,)
        order = np.argsort(-probs)[: min(topk, len(probs))]
        best = int(np.argmax(window_probs[:, order[0]]))
        window = decoded[per_window[best]]  # (T, H, W, 3): what the model's view is cut from
        box = test_crop_box(window, self.clip_cfg)
        prediction = Prediction(
            topk=[(self.class_names[i], float(probs[i])) for i in order],
            probs=probs,
            class_names=self.class_names,
            window_probs=window_probs,
            window_times=[(float(w.min()) / fps, float(w.max() + 1) / fps) for w in windows],
            window_indices=[np.asarray(w) for w in windows],
            frames=np.ascontiguousarray(window[:, box[0]:box[2], box[1]:box[3]]),
            view_box=box,
            context_frame=window[len(window) // 2].copy(),
            frames_window=best,
            fps=float(fps),
            num_frames_used=int(n),
            notes=notes,
        )
        prediction.familiarity = self._familiarity(torch.cat(features))
        if prediction.familiarity is not None and not prediction.familiarity["familiar"]:
            notes.insert(0, UNFAMILIAR)
        tick = time.perf_counter()
        if with_attention:
            prediction.attention, prediction.diversity = collect_maps(raw_maps)
            prediction.attention_quality, prediction.attention_warnings = self._quality(prediction.attention, batches)
            if prediction.attention[0].spatial is None:
                notes.append("this model has no spatial attention (SDA off): no spatial maps")
            if prediction.attention[0].temporal is None:
                notes.append("this model has no temporal attention (TDA off): no temporal maps")
        timings.update(preprocess=prep_s, model=model_s, maps=time.perf_counter() - tick, total=time.perf_counter() - start)
        prediction.timings = timings
        return prediction

    def _familiarity(self, window_features: torch.Tensor) -> dict | None:
        """This video's familiarity score against the training videos (core.familiarity)."""
        if self.familiarity is None:
            return None
        reference, threshold, _ = self.familiarity
        score = float(familiarity_scores(reference, video_feature(window_features))[0])
        return {"score": round(score, 4), "threshold": round(threshold, 4), "familiar": score >= threshold}

    def _quality(self, stages: list[StageMaps], batches) -> tuple[dict, list[str]]:
        """This video's per-stage concentration and lift, from the received maps `collect_maps`
        took, and warnings from them and from the checkpoint's own held-out figures (input
        dependence needs many videos: it comes from there)."""
        spatial = [None if s.spatial is None else s.spatial.reshape(len(s.spatial), -1) for s in stages]  # (W, HW)
        report = video_quality(spatial, [s.received for s in stages],
                               torch.cat(batches).float(), self.clip_cfg, [s.shape for s in stages])
        held_out = (self.checkpoint.meta.get("metrics") or {}).get("attention_quality") or {}
        return report, describe(report) + describe(held_out, "this checkpoint's held-out videos")

    def _forward(self, batch: torch.Tensor, with_attention: bool):
        """The model on `batch`; where the device lacks an operator (MPS), the model moves to the
        CPU for good, with a note in this and every later result."""
        output, used = with_cpu_fallback(lambda device: self._forward_on(device, batch, with_attention), self.device,
                                         self._device_notes.append)
        self.device = used  # _forward_on moved the model there
        return output

    def _forward_on(self, device: torch.device, batch: torch.Tensor, with_attention: bool):
        if device != self.device:
            self.model = self.model.to(device)
        batch = prepare_clip(self.model, batch.to(device, non_blocking=True))
        autocast = (
            torch.autocast(device.type, dtype=torch.bfloat16)
            if self.precision == "bf16" and bf16_supported(device)
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            return self.model(batch, return_attention=with_attention)


def _balanced_batches(n: int, batch: int) -> list[tuple[int, int]]:
    """[first, last) bounds of ceil(n / batch) batches of near-equal size: 9 windows at batch 8
    run as 4 + 5, not 8 + 1 (a batch of one wastes the weight traffic of a whole forward)."""
    count = -(-n // batch)
    bounds = [round(k * n / count) for k in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _check_args(topk: int, max_seconds: float | None, batch_windows: int) -> None:
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
    if batch_windows < 1:
        raise ValueError(f"batch_windows must be >= 1, got {batch_windows}")


def _window_notes(n: int, windows: list[np.ndarray], cfg: ClipConfig) -> list[str]:
    """Say when the protocol had to bend: short videos and kept tails loop, long videos are thinned."""
    notes = []
    if cfg.whole_video:
        notes.append(f"{len(windows)} clip(s) of {cfg.num_frames} frames, each spread over the whole video "
                     "(segment sampling): the timeline shows sampling phases, not moments")
        if n < cfg.num_frames:
            notes.append(f"video shorter than one clip ({n} frames < {cfg.num_frames}): frames repeated")
        return notes
    if n < cfg.window:
        notes.append(
            f"video shorter than one window ({n} frames < {cfg.num_frames} x stride {cfg.stride} = {cfg.window}): "
            "frames repeated (looped)"
        )
    elif any(np.any(np.diff(w) <= 0) for w in windows):
        notes.append(f"the last window has only {n % cfg.window} frames: looped to fill {cfg.window}")
    if cfg.max_windows is not None:
        possible = len(test_windows(n, cfg.replace(max_windows=None)))
        if possible > len(windows):
            notes.append(f"{possible} windows thinned to {len(windows)} evenly spaced ones (clip config max_windows)")
    return notes


def collect_maps(outputs) -> tuple[list[StageMaps], dict[str, np.ndarray | None]]:
    """Batches of STMANetOutput with maps -> per-stage maps over all windows, and the window-mean
    4x4 stage similarity matrices (core.model.losses.stage_similarity, the eq. 7 quantity)."""
    shapes = outputs[0].stage_shapes
    stages = []
    for i, (t, h, w) in enumerate(shapes):
        spatial = temporal = received = None
        if outputs[0].spatial_attention[i] is not None:
            a_s = torch.cat([o.spatial_attention[i].float() for o in outputs])  # (W, HW, HW), rows = queries
            spatial = a_s.mean(1).reshape(-1, h, w).cpu().numpy()  # (W, H_i, W_i)
        if outputs[0].temporal_attention[i] is not None:
            a_t = torch.cat([o.temporal_attention[i].float() for o in outputs])  # (W, T_i, T_i)
            temporal = a_t.cpu().numpy()
            received = a_t.mean(1).cpu().numpy()  # (W, T_i)
        stages.append(StageMaps(i + 2, (t, h, w), spatial, temporal, received))
    sims = [stage_similarity(o) for o in outputs]  # per batch: ((B,4,4) | None, (B,4,4) | None)
    diversity = {}
    for k, name in enumerate(("spatial", "temporal")):
        parts = [s[k] for s in sims if s[k] is not None]
        diversity[name] = torch.cat(parts).mean(0).cpu().numpy() if parts else None
    return stages, diversity


# ---------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.predict", description="Classify the action in a video.")
    parser.add_argument("video", help="video file (mp4, avi, gif, ...)")
    parser.add_argument("--checkpoint", required=True, help="checkpoint folder or Hub repo id (user/name)")
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--attention", action="store_true", help="also compute attention maps (in --json output)")
    parser.add_argument("--max-seconds", type=float, default=None, help="use only the first N seconds")
    parser.add_argument("--device", default=None, help=f"{DEVICE_CHOICES} (default auto: CUDA, then Apple MPS, then CPU)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    args = parser.parse_args(argv)
    try:
        predictor = Predictor(args.checkpoint, device=args.device, precision=args.precision)
        result = predictor.predict(args.video, topk=args.topk, with_attention=args.attention, max_seconds=args.max_seconds)
    except ValueError as error:  # VideoError and CheckpointError are ValueErrors with clear messages
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"video": str(args.video), **result.to_dict(with_maps=args.attention)}))
        return 0
    width = max(len(name) for name, _ in result.topk)
    print(f"{args.video}: {len(result.window_times)} window(s), "
          f"decode {result.timings['decode']:.2f} s, model {result.timings['model']:.2f} s")
    for name, p in result.topk:
        print(f"  {name:<{width}}  {p:.3f}")
    for note in result.notes:
        print(f"note: {note}")
    if result.diversity is not None:
        for kind, matrix in result.diversity.items():
            if matrix is not None:
                print(f"{kind} stage similarity (stages 2-5):\n{np.array2string(matrix, precision=2)}")
    for stage, row in ((result.attention_quality or {}).get("spatial") or {}).items():
        lift = "-" if row["motion_lift"] is None else f"{row['motion_lift']:.2f}"
        print(f"{stage} spatial attention: {row['effective_cells']:.1f} of {row['cells']} cells, on-motion lift {lift}")
    for warning in result.attention_warnings:
        print(f"warning: {warning}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
