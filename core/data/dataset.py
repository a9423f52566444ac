"""VideoClipDataset: a VideoList as (clip, label) items for torch's DataLoader.

Train mode: one random clip per item (design section 7), its randomness drawn from
(seed, epoch, index), so a run is reproducible whatever the worker count; call set_epoch(e)
before each epoch (as with DistributedSampler) to get fresh clips.
Eval mode: an item is every test window of the video, (W, 3, T, H, W), with its label; batch
with collate_windows and average per video with mean_over_windows.

A video that fails to decode is warned about once (DataWarning naming the file), remembered in
`failed`, and replaced by the next readable sample (deterministic), so a bad file never stops an
epoch. Each DataLoader worker keeps its own `failed` set, so a bad file may be warned about
once per worker. Run scan_videos at start-up to find such files before training.
"""
from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .cache import FrameCache
from .clips import ClipConfig, decode_max_side, test_transform, test_windows, train_indices, train_transform
from .samples import Sample, ScanReport, VideoList
from .video import DataWarning, VideoInfo, probe_video, read_frames


class VideoClipDataset(Dataset):
    def __init__(
        self,
        video_list: VideoList,
        clip_cfg: ClipConfig,
        train: bool,
        seed: int = 0,
        frame_cache: FrameCache | None = None,
        max_side: int | None = None,
    ) -> None:
        """max_side: decode size without a cache; None picks per video the smallest size at
        which no crop is upsampled (clips.decode_max_side)."""
        if len(video_list) == 0:
            raise ValueError("VideoClipDataset needs at least one sample")
        self.samples: list[Sample] = list(video_list.samples)
        self.class_names = list(video_list.class_names)
        self.cfg = clip_cfg
        self.train = train
        self.seed = seed
        self.cache = frame_cache
        self.max_side = max_side
        self.epoch = 0
        self.failed: set[Path] = set()
        self.swap = _swap_map(clip_cfg.flip_label_swap, self.class_names)
        self._info: dict[Path, VideoInfo] = {}

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def targets(self) -> list[int]:
        return [s.label for s in self.samples]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """Train: ((3,T,H,W), label). Eval: ((W,3,T,H,W), label)."""
        n = len(self.samples)
        index = int(index) % n
        last_error: Exception | None = None
        for j in (index + k for k in range(n)):
            sample = self.samples[j % n]
            if sample.path in self.failed:
                continue
            rng = np.random.default_rng([self.seed, self.epoch, index, j % n])
            try:
                return self._load(sample, rng)
            except Exception as exc:  # never raise mid-epoch for one bad file
                last_error = exc
                self._mark_failed(sample.path, exc)
        raise RuntimeError(f"no readable video among the {n} samples of this dataset") from last_error

    def _mark_failed(self, path: Path, exc: Exception) -> None:
        if path not in self.failed:
            self.failed.add(path)
            warnings.warn(
                f"skipping unreadable video {path} ({type(exc).__name__}: {exc}); using the next sample instead",
                DataWarning,
                stacklevel=3,
            )

    def _load(self, sample: Sample, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        n_frames = self._num_frames(sample.path)
        if self.train:
            frames = self._read(sample.path, train_indices(n_frames, self.cfg, rng))
            flipped: list[bool] = []
            clip = train_transform(frames, self.cfg, rng, flipped)
            label = self.swap.get(sample.label, sample.label) if flipped[0] else sample.label
            return clip, label
        windows = test_windows(n_frames, self.cfg)
        frames = self._read(sample.path, np.concatenate(windows))
        t = self.cfg.num_frames
        clips = torch.stack([test_transform(frames[k * t : (k + 1) * t], self.cfg) for k in range(len(windows))])
        return clips, sample.label

    def _num_frames(self, path: Path) -> int:
        if self.cache is not None:
            return len(self.cache.get(path)) * self.cache.every
        return self._probe(path).num_frames

    def _probe(self, path: Path) -> VideoInfo:
        if path not in self._info:
            self._info[path] = probe_video(path)
        return self._info[path]

    def _read(self, path: Path, indices: np.ndarray) -> np.ndarray:
        """(N,H,W,3) uint8 frames at `indices` (source frame numbers)."""
        if self.cache is not None:
            cached = self.cache.get(path)
            return np.asarray(cached[np.minimum(indices // self.cache.every, len(cached) - 1)])
        side = self.max_side
        if side is None:
            info = self._probe(path)
            side = decode_max_side(info.width, info.height, self.cfg, self.train)
        return read_frames(path, indices, max_side=side)


def _swap_map(pairs, class_names: list[str]) -> dict[int, int]:
    """flip_label_swap name pairs -> {label: swapped label}; unknown names warned about, ignored."""
    index = {name: i for i, name in enumerate(class_names)}
    swap: dict[int, int] = {}
    for a, b in pairs:
        if a not in index or b not in index:
            warnings.warn(f"flip_label_swap pair ({a!r}, {b!r}) not among the class names; ignored", DataWarning)
            continue
        swap[index[a]], swap[index[b]] = index[b], index[a]
    return swap


def collate_windows(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eval items (W_i,3,T,H,W) -> (clips (sum W_i,3,T,H,W), labels (B,), counts (B,) = W_i)."""
    clips = torch.cat([c for c, _ in batch])
    labels = torch.tensor([int(y) for _, y in batch], dtype=torch.long)
    counts = torch.tensor([c.shape[0] for c, _ in batch], dtype=torch.long)
    return clips, labels, counts


def mean_over_windows(scores: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Per-window scores (sum W_i, K) -> per-video mean (B, K): the paper's video-level score."""
    return torch.stack([s.mean(0) for s in torch.split(scores, counts.tolist())])


def load_test_clips(path: str | Path, cfg: ClipConfig) -> tuple[torch.Tensor, list[np.ndarray], VideoInfo]:
    """One video -> (clips (W,3,T,H,W), windows (W x (T,) source frame indices), info).

    The eval-mode item of VideoClipDataset for a single file (what a predictor needs); raises
    VideoError for an unreadable file.
    """
    info = probe_video(path)
    windows = test_windows(info.num_frames, cfg)
    side = decode_max_side(info.width, info.height, cfg, train=False)
    frames = read_frames(path, np.concatenate(windows), max_side=side)
    t = cfg.num_frames
    clips = torch.stack([test_transform(frames[k * t : (k + 1) * t], cfg) for k in range(len(windows))])
    return clips, windows, info


def scan_videos(video_list: VideoList, workers: int = 2) -> ScanReport:
    """Probe every video (opens it, decodes its first frame): which are usable, which not and why."""

    def one(sample: Sample):
        try:
            probe_video(sample.path)
            return sample, None
        except Exception as exc:
            return sample, f"{type(exc).__name__}: {exc}"

    report = ScanReport()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for sample, error in pool.map(one, video_list.samples):
            if error is None:
                report.ok.append(sample)
            else:
                report.bad.append((sample.path, error))
    return report
