"""Decoded-frame cache: each video decoded once to a uint8 .npy, then memory-mapped.

Why: on a small set (360 gesture clips, 640x480, 18-143 frames) decoding dominates a CPU
training step, and every epoch decodes the same files again. A video's frames at reduced size
(max_side, optionally every k-th frame) are a few MB; np.load(mmap_mode='r') reads only the
pages a clip touches, and the OS page cache keeps hot files in memory across epochs and workers.

Keys: the resolved path, mtime, size, max_side and every, so an edited or replaced video and a
different resolution get a new entry. Writes go to a temp file then os.replace, so a crashed or
concurrent writer (several DataLoader workers) never leaves a half-written entry behind.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from .samples import ScanReport, VideoList
from .video import read_video


class FrameCache:
    def __init__(self, cache_dir: str | Path, max_side: int | None = 256, every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.cache_dir = Path(cache_dir)
        self.max_side = max_side
        self.every = every

    def entry(self, video_path: str | Path) -> Path:
        """The .npy file this video's frames live in (it may not exist yet)."""
        path = Path(video_path).resolve()
        st = path.stat()  # FileNotFoundError for a missing video, as a direct decode would
        key = f"{path}|{st.st_mtime_ns}|{st.st_size}|{self.max_side}|{self.every}"
        digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]
        return self.cache_dir / f"{path.stem[:48]}-{digest}.npy"

    def has(self, video_path: str | Path) -> bool:
        return self.entry(video_path).is_file()

    def get(self, video_path: str | Path) -> np.ndarray:
        """(N,H,W,3) uint8 RGB frames (read-only memmap), decoding the video on first use.

        Frame j of the result is frame j * every of the video. Raises VideoError as read_video.
        """
        entry = self.entry(video_path)
        if not entry.is_file():
            frames, _ = read_video(video_path, max_side=self.max_side, every=self.every)
            _save_atomic(entry, frames)
        return np.load(entry, mmap_mode="r")

    def build(
        self,
        video_list: VideoList,
        workers: int = 2,
        progress: bool | Callable[[int, int], None] = True,
    ) -> ScanReport:
        """Decode every video of the list not cached yet; returns which worked and which failed.

        Threads suffice: OpenCV decodes and resizes with the GIL released. progress=True prints a
        tqdm bar to stderr; a callable gets (done, total) after each video.
        """
        samples = list(video_list.samples)
        report = ScanReport()
        bar = _progress_bar(len(samples), progress)

        def one(sample):
            try:
                self.get(sample.path)
                return sample, None
            except Exception as exc:  # a bad video is reported, never stops the build
                return sample, f"{type(exc).__name__}: {exc}"

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for done, (sample, error) in enumerate(pool.map(one, samples), start=1):
                if error is None:
                    report.ok.append(sample)
                else:
                    report.bad.append((sample.path, error))
                bar(done)
        bar(None)
        return report

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.cache_dir.glob("*.npy")) if self.cache_dir.is_dir() else 0

    def clear(self) -> None:
        """Remove every entry (and stray temp files) of this cache folder."""
        if self.cache_dir.is_dir():
            for p in [*self.cache_dir.glob("*.npy"), *self.cache_dir.glob(".*.tmp")]:
                p.unlink(missing_ok=True)


def _save_atomic(entry: Path, frames: np.ndarray) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=f".{entry.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, np.ascontiguousarray(frames))
        os.replace(tmp, entry)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _progress_bar(total: int, progress: bool | Callable[[int, int], None]) -> Callable[[int | None], None]:
    """A function taking the number done (None: finished)."""
    if callable(progress):
        return lambda done: None if done is None else progress(done, total)
    if not progress:
        return lambda done: None
    bar = tqdm(total=total, desc="decoding to frame cache", unit="video", file=sys.stderr)

    def update(done: int | None) -> None:
        if done is None:
            bar.close()
        else:
            bar.update(done - bar.n)

    return update
