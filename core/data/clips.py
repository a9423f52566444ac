"""Clip sampling and transforms: the paper's recipe (design/st-manet.md section 7).

Train: a random window of num_frames * stride frames, every stride-th frame kept (64 -> 32);
a random crop with the target aspect whose side is a fraction in crop_scale of the largest such
crop (square target: [0.5, 1] x the short side), resize to height x width, random horizontal flip.
Test: the whole video in consecutive non-overlapping windows, centre crop; the video's score is
the mean over its windows (done by the caller).

Segment sampling (`sampling="segments"`, TSN-style, a departure from the paper for short
trimmed clips): the video is cut into num_frames equal segments by time and one frame is taken
from each (a random one when training, the same phase in every segment when testing, one clip
per phase), so a clip covers the whole action whatever the frame rate or length of the video.
Training options: one shared phase for all segments (evenly spaced frames, as at test), and a
time_scale range (the clip covers a random part of the video: a speed change and a temporal crop).
`sampling="segment_pairs"` takes, from each of num_frames / 2 segments, its frame and the next
source frame: a model with input_mode "grey_pair_diff" sees each pair's difference, the motion
over one source frame (0.05-0.07 s at 15-20 fps), where a difference of frames a segment apart
(0.1-0.3 s) can show a waving hand at two unrelated places.

Short videos and short tails loop (indices modulo the frames available) rather than repeat the
last frame: a looped action still looks like the action, a frozen frame does not.

Clips are (3, T, H, W) float tensors normalised with Kinetics mean/std (as torchvision's video
models), the layout the model takes after batching: (B, 3, T, H, W).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .roi import crop_box, motion_box

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
SAMPLINGS = ("window", "segments", "segment_pairs")


@dataclass(frozen=True)
class ClipConfig:
    """How a clip is cut from a video and turned into the model's input. JSON-safe via to_dict."""

    num_frames: int = 32  # T, frames per clip
    stride: int = 2  # keep every stride-th frame: a window spans num_frames * stride frames
    height: int = 112
    width: int = 112
    # Side of the random train crop as a fraction of the largest crop with the target aspect.
    crop_scale: tuple[float, float] = (0.5, 1.0)
    # The train crop's aspect ratio (width / height) times a factor drawn log-uniformly from this
    # range, before the resize to height x width: people's builds and cameras' framing differ.
    # (1, 1): the target aspect only.
    aspect_jitter: tuple[float, float] = (1.0, 1.0)
    flip: bool = True  # random horizontal flip (p = 0.5) when training
    # (a, b) class-name pairs whose labels swap when a clip is flipped (gestures: left/right).
    flip_label_swap: tuple[tuple[str, str], ...] = ()
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD
    max_windows: int | None = 32  # cap on test windows per video (evenly spaced); None: no cap
    # Crop each clip to a square around what moves (core.data.roi) before the crops above.
    motion_crop: bool = False
    # The motion box: at least this fraction of the short side, around the pixels that change by
    # at least motion_fraction of the most changing one (core.data.roi). Raising both from the
    # defaults crops tighter, onto what moves most (the hands at 4-6 m rather than the whole body).
    motion_min_side: float = 0.35
    motion_fraction: float = 0.3
    # "window": num_frames consecutive frames every stride-th (the paper); "segments": one frame
    # per equal time segment of the whole video (stride unused), for short trimmed clips;
    # "segment_pairs": as segments, over num_frames / 2 segments, each frame followed by the next one.
    sampling: str = "window"
    # Segment sampling when training: "independent" draws each segment's frame on its own (TSN),
    # so neighbouring frames lie 0-2 segments apart; "shared" draws one phase for all segments,
    # so frames are evenly spaced, as at test time, and frame differences span equal times.
    segment_phase: str = "independent"
    # Segment sampling when training: the clip spans a random fraction of the video's duration in
    # this range, at a random start (a speed change and temporal crop in one); (1, 1): the whole video.
    time_scale: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        for name in ("num_frames", "stride", "height", "width"):
            if getattr(self, name) < 1:
                raise ValueError(f"ClipConfig.{name} must be >= 1, got {getattr(self, name)}")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"ClipConfig.crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")
        lo, hi = self.aspect_jitter
        if not 0 < lo <= 1 <= hi:
            raise ValueError(f"ClipConfig.aspect_jitter must satisfy 0 < lo <= 1 <= hi, got {self.aspect_jitter}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("ClipConfig.mean and std need 3 values each, std > 0")
        if self.max_windows is not None and self.max_windows < 1:
            raise ValueError(f"ClipConfig.max_windows must be >= 1 or None, got {self.max_windows}")
        if self.segment_phase not in ("independent", "shared"):
            raise ValueError(f"ClipConfig.segment_phase must be independent or shared, got {self.segment_phase!r}")
        lo, hi = self.time_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"ClipConfig.time_scale must satisfy 0 < lo <= hi <= 1, got {self.time_scale}")
        if not (0 < self.motion_min_side <= 1 and 0 < self.motion_fraction < 1):
            raise ValueError(f"ClipConfig.motion_min_side must be in (0, 1] and motion_fraction in (0, 1), got "
                             f"{self.motion_min_side}, {self.motion_fraction}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"ClipConfig.sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if self.sampling == "segment_pairs" and self.num_frames % 2:
            raise ValueError(f"ClipConfig.sampling='segment_pairs' needs an even num_frames, got {self.num_frames}")
        if any(len(pair) != 2 for pair in self.flip_label_swap):
            raise ValueError(f"ClipConfig.flip_label_swap needs (a, b) pairs, got {self.flip_label_swap}")

    @property
    def whole_video(self) -> bool:
        """Whether each clip spreads over the whole video (segment sampling) rather than a window."""
        return self.sampling != "window"

    @property
    def segments(self) -> int:
        """Time segments a clip samples: one frame each, or one pair each (segment_pairs)."""
        return self.num_frames // 2 if self.sampling == "segment_pairs" else self.num_frames

    @property
    def window(self) -> int:
        """Source frames spanned by one clip."""
        return self.num_frames * self.stride

    def to_dict(self) -> dict:
        """Plain JSON types: tuples become lists."""
        return _lists(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, values: dict) -> "ClipConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown clip config fields: {unknown}")
        values = dict(values)
        for name in ("crop_scale", "aspect_jitter", "mean", "std", "time_scale"):
            if name in values:
                values[name] = tuple(values[name])
        if "flip_label_swap" in values:
            values["flip_label_swap"] = tuple(tuple(pair) for pair in values["flip_label_swap"])
        return cls(**values)

    def replace(self, **changes) -> "ClipConfig":
        return dataclasses.replace(self, **changes)


def _lists(value):
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value


# ---------------------------------------------------------------- sampling (frame indices)


def train_indices(n_frames: int, cfg: ClipConfig, rng: np.random.Generator) -> np.ndarray:
    """Indices (num_frames,) of one random training clip.

    A video at least one window long gets a uniformly placed window. A shorter one loops from a
    random phase within the first stride frames, so the action keeps its order on the first pass
    (order matters: `come` and `back` are the same motion reversed).
    """
    _check_frames(n_frames)
    if cfg.whole_video:
        s = cfg.segments
        phase = rng.random(s) if cfg.segment_phase == "independent" else np.full(s, rng.random())
        if cfg.time_scale == (1.0, 1.0):
            return _with_pairs(segment_indices(n_frames, s, phase), n_frames, cfg)
        span = max(1, round(n_frames * rng.uniform(*cfg.time_scale)))  # source frames the clip covers
        start = int(rng.integers(0, n_frames - span + 1))
        return _with_pairs(start + segment_indices(span, s, phase), n_frames, cfg)
    steps = np.arange(cfg.num_frames, dtype=np.int64) * cfg.stride
    if n_frames >= cfg.window:
        start = int(rng.integers(0, n_frames - cfg.window + 1))
        return start + steps
    start = int(rng.integers(0, min(cfg.stride, n_frames)))
    return (start + steps) % n_frames


def test_windows(n_frames: int, cfg: ClipConfig) -> list[np.ndarray]:
    """Consecutive non-overlapping windows covering the video, each (num_frames,) indices.

    A tail shorter than half a window is dropped, unless it is the whole video; a kept tail (or a
    video shorter than one window) loops within itself. More than max_windows windows are thinned
    to max_windows evenly spaced ones.
    """
    _check_frames(n_frames)
    if cfg.whole_video:
        clips = cfg.max_windows or 1
        return [_with_pairs(segment_indices(n_frames, cfg.segments, np.full(cfg.segments, (c + 0.5) / clips)), n_frames, cfg)
                for c in range(clips)]
    steps = np.arange(cfg.num_frames, dtype=np.int64) * cfg.stride
    full = n_frames // cfg.window
    windows = [w * cfg.window + steps for w in range(full)]
    tail = n_frames - full * cfg.window
    if tail and (full == 0 or 2 * tail >= cfg.window):
        windows.append(full * cfg.window + steps % tail)
    if cfg.max_windows is not None and len(windows) > cfg.max_windows:
        keep = np.unique(np.linspace(0, len(windows) - 1, cfg.max_windows).round().astype(int))
        windows = [windows[k] for k in keep]
    return windows


def segment_indices(n_frames: int, num_segments: int, phase: np.ndarray) -> np.ndarray:
    """One frame per equal segment of [0, n_frames): segment k spans [k n / S, (k+1) n / S) and
    gives the frame at `phase[k]` (in [0, 1)) of its span. Shorter videos repeat frames in order."""
    edges = np.arange(num_segments + 1, dtype=np.float64) * n_frames / num_segments
    picks = edges[:-1] + np.clip(phase, 0.0, 1.0 - 1e-9) * (edges[1:] - edges[:-1])
    return np.minimum(picks.astype(np.int64), n_frames - 1)


def _with_pairs(picks: np.ndarray, n_frames: int, cfg: ClipConfig) -> np.ndarray:
    """segment_pairs: each pick followed by the next source frame (the last frame pairs with
    itself), (S,) -> (2S,); other samplings: the picks as they are."""
    if cfg.sampling != "segment_pairs":
        return picks
    return np.stack([picks, np.minimum(picks + 1, n_frames - 1)], axis=1).reshape(-1)


def _check_frames(n_frames: int) -> None:
    if n_frames < 1:
        raise ValueError(f"a video needs at least one frame, got n_frames={n_frames}")


# ---------------------------------------------------------------- transforms (pixels)


def _max_crop(h: int, w: int, aspect: float) -> tuple[float, float]:
    """(ch, cw) of the largest crop of an h x w frame with width / height = aspect."""
    if w / h >= aspect:
        return float(h), h * aspect
    return w / aspect, float(w)


def decode_max_side(width: int, height: int, cfg: ClipConfig, train: bool = True) -> int | None:
    """Longest side to decode a width x height video at so no crop is upsampled; None: full size.

    The smallest crop (train: crop_scale[0] of the largest; test: the largest) must still cover
    cfg.height x cfg.width pixels. Decoding a 640x480 video at 299x224 instead of full size
    makes decoding, memory and the resize 4x cheaper at no loss.
    """
    max_h, max_w = _max_crop(height, width, cfg.width / cfg.height)
    lo = cfg.crop_scale[0] if train else 1.0
    if cfg.motion_crop:  # the motion box can shrink the frame to motion_min_side x its short side
        lo *= cfg.motion_min_side
    factor = max(cfg.height / (max_h * lo), cfg.width / (max_w * lo))
    if factor >= 1:
        return None
    return int(np.ceil(max(width, height) * factor))


def _resize(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T,h,w,3) uint8 -> (T,height,width,3) uint8 with OpenCV, frame by frame.

    INTER_AREA when shrinking (it averages, so no aliasing), bilinear when enlarging. cv2 on
    uint8 is ~8x faster here than F.interpolate(antialias=True) on float at 2 CPU threads.
    """
    t, h, w = frames.shape[:3]
    if (h, w) == (height, width):
        return frames
    interp = cv2.INTER_AREA if h * w >= height * width else cv2.INTER_LINEAR
    out = np.empty((t, height, width, 3), dtype=np.uint8)
    for k in range(t):
        out[k] = cv2.resize(frames[k], (width, height), interpolation=interp)
    return out


def _to_clip(frames: np.ndarray, cfg: ClipConfig, flip: bool) -> torch.Tensor:
    """(T,h,w,3) uint8 crop -> (3,T,height,width) normalised float."""
    small = _resize(frames, cfg.height, cfg.width)
    if flip:
        small = small[:, :, ::-1]
    x = torch.from_numpy(np.ascontiguousarray(small)).permute(3, 0, 1, 2).contiguous().float().div_(255.0)  # (3,T,H,W)
    return normalize(x, cfg)


def _motion_crop(frames: np.ndarray, cfg: ClipConfig) -> np.ndarray:
    """The clip's frames cut to the square around what moves in them (cfg.motion_crop), else as is."""
    if not cfg.motion_crop:
        return frames
    return crop_box(frames, _motion_box(frames, cfg))


def _motion_box(frames: np.ndarray, cfg: ClipConfig) -> tuple[int, int, int, int]:
    """The motion box with the clip config's tightness (core.data.roi)."""
    return motion_box(frames, min_side=cfg.motion_min_side, fraction=cfg.motion_fraction)


def _check_frames_array(frames: np.ndarray) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T,H,W,3) uint8, got {frames.shape} {frames.dtype}")


def train_transform(
    frames: np.ndarray, cfg: ClipConfig, rng: np.random.Generator, flip_out: list | None = None
) -> torch.Tensor:
    """(T,H,W,3) uint8 RGB -> (3,T,height,width) float: random crop, random flip, resize, normalise.

    flip_out, when given, gets True or False appended (whether this clip was flipped), so the
    caller can swap left/right labels.
    """
    _check_frames_array(frames)
    frames = _motion_crop(frames, cfg)
    h, w = frames.shape[1:3]
    max_h, max_w = _max_crop(h, w, cfg.width / cfg.height)
    side = rng.uniform(*cfg.crop_scale)
    stretch = 1.0  # the crop's aspect over the target's
    if cfg.aspect_jitter != (1.0, 1.0):
        stretch = float(np.exp(rng.uniform(*np.log(cfg.aspect_jitter))))
    ch = min(h, max(1, round(max_h * side / stretch**0.5)))
    cw = min(w, max(1, round(max_w * side * stretch**0.5)))
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    flip = bool(cfg.flip and rng.random() < 0.5)
    if flip_out is not None:
        flip_out.append(flip)
    return _to_clip(frames[:, y : y + ch, x : x + cw], cfg, flip)


def test_crop_box(frames: np.ndarray, cfg: ClipConfig) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1) in `frames`' pixels of what a test clip shows the model: the motion box
    (cfg.motion_crop), then the largest centre crop of it with the model's aspect."""
    h, w = frames.shape[1:3]
    y0, x0, y1, x1 = _motion_box(frames, cfg) if cfg.motion_crop else (0, 0, h, w)
    bh, bw = y1 - y0, x1 - x0
    max_h, max_w = _max_crop(bh, bw, cfg.width / cfg.height)
    ch, cw = min(bh, max(1, round(max_h))), min(bw, max(1, round(max_w)))
    y, x = y0 + (bh - ch) // 2, x0 + (bw - cw) // 2
    return y, x, y + ch, x + cw


def test_view(frames: np.ndarray, cfg: ClipConfig) -> np.ndarray:
    """The region of (T,H,W,3) frames a test clip feeds the model, at their own resolution (a view)."""
    y0, x0, y1, x1 = test_crop_box(frames, cfg)
    return frames[:, y0:y1, x0:x1]


def test_batch(frames: np.ndarray, rows: list[np.ndarray], cfg: ClipConfig) -> torch.Tensor:
    """(B,3,T,height,width) test clips, one per index array in `rows` (frames[rows[b]]): the test
    crop, the uint8 resize, then one table lookup per channel from uint8 to the normalised float.

    Bit for bit what `_to_clip` makes of the same crop (tests/test_data_clips.py), without torch's
    elementwise ops: torch runs to-float, /255 and normalise as separate multi-threaded passes,
    which on a loaded 2-core machine cost more than a narrow model's whole forward
    (bench/predict_e2e.py); a lookup is one single-threaded pass.
    """
    t, h, w = cfg.num_frames, cfg.height, cfg.width
    table = _normalise_table(cfg)
    out = np.empty((len(rows), 3, t, h, w), np.float32)
    for b, r in enumerate(rows):
        window = frames[r]
        _check_frames_array(window)
        if len(window) != t:
            raise ValueError(f"a test clip needs {t} frames, got {len(window)}")
        small = _resize(test_view(window, cfg), h, w)  # (T, h, w, 3) uint8
        for c in range(3):
            np.take(table[c], small[..., c], out=out[b, c])
    return torch.from_numpy(out)


def test_transform(frames: np.ndarray, cfg: ClipConfig) -> torch.Tensor:
    """(T,H,W,3) uint8 RGB -> (3,T,height,width) float: `test_batch` of one clip."""
    _check_frames_array(frames)
    return test_batch(frames, [np.arange(len(frames))], cfg.replace(num_frames=len(frames)))[0]


def _normalise_table(cfg: ClipConfig) -> np.ndarray:
    """(3, 256) float32: what `_to_clip`'s float conversion, /255 and `normalize` make of each
    uint8 value, by those very torch operations (so lookups are bit-identical)."""
    values = torch.arange(256, dtype=torch.uint8).float().div_(255.0)  # as _to_clip
    return normalize(values.view(1, 256, 1, 1).expand(3, 256, 1, 1), cfg).reshape(3, 256).numpy()


def _stats(clip: torch.Tensor, cfg: ClipConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """mean, std shaped to broadcast over a channel axis at -4: (3,T,H,W) or (B,3,T,H,W)."""
    if clip.ndim < 4 or clip.shape[-4] != 3:
        raise ValueError(f"expected (...,3,T,H,W), got {tuple(clip.shape)}")
    mean = torch.tensor(cfg.mean, dtype=clip.dtype, device=clip.device).view(3, 1, 1, 1)
    std = torch.tensor(cfg.std, dtype=clip.dtype, device=clip.device).view(3, 1, 1, 1)
    return mean, std


def normalize(clip: torch.Tensor, cfg: ClipConfig) -> torch.Tensor:
    """(...,3,T,H,W) in [0, 1] -> (x - mean) / std."""
    mean, std = _stats(clip, cfg)
    return (clip - mean) / std


def denormalize(clip: torch.Tensor, cfg: ClipConfig) -> torch.Tensor:
    """Inverse of normalize: back to [0, 1] (not clamped)."""
    mean, std = _stats(clip, cfg)
    return clip * std + mean


def clip_to_frames(clip: torch.Tensor, cfg: ClipConfig) -> np.ndarray:
    """A normalised (3,T,H,W) clip -> (T,H,W,3) uint8 RGB, for showing what the model saw."""
    x = denormalize(clip.detach().float().cpu(), cfg).clamp(0, 1).mul(255).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).numpy()


# Named after the paper's train/test protocol, not pytest tests: keep pytest from collecting them
# when a test module imports them.
for _name in ("test_windows", "test_transform", "test_crop_box", "test_view", "test_batch"):
    globals()[_name].__test__ = False

