"""Class folders: root/<class>/<video> (any depth below the class folder), split by a seed.

The split is stratified (each class split on its own, val_fraction of it to validation) and each
class's shuffle is seeded by (seed, class name), so adding a class leaves the others' split as is.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from .samples import VIDEO_EXTENSIONS, Sample, VideoList, is_video_file


def read_class_folders(root: str | Path, val_fraction: float = 0.2, seed: int = 0) -> tuple[VideoList, VideoList]:
    """(train, val) over the sorted class folders that hold at least one video."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"class-folder root {root} is not a folder")
    problems: list[str] = []
    per_class: dict[str, list[Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in folder.rglob("*") if is_video_file(p))
        if files:
            per_class[folder.name] = files
        else:
            problems.append(f"{folder}: no video files ({', '.join(_ext_hint())}); not a class")
    names = list(per_class)
    train, val = [], []
    for label, name in enumerate(names):
        files = per_class[name]
        order = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))]).permutation(len(files))
        n_val = _val_count(len(files), val_fraction)
        val += [Sample(files[i], label) for i in sorted(order[:n_val])]
        train += [Sample(files[i], label) for i in sorted(order[n_val:])]
    return VideoList(train, list(names), problems), VideoList(val, list(names), [])


def _val_count(n: int, fraction: float) -> int:
    """round(n * fraction), but at least 1 when fraction > 0 and n >= 2, and never all of n."""
    if fraction <= 0 or n < 2:
        return 0
    return min(max(1, round(n * fraction)), n - 1)


def _ext_hint() -> list[str]:
    return [e.lstrip(".") for e in VIDEO_EXTENSIONS]
