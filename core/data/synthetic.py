"""Generated videos for checks that must not depend on downloaded data: the motion-rhythm set.

A bright square on a dark background moves back and forth along x (a triangle wave); classes
differ only in the period of that motion, so a single frame says nothing about the class and
only a model that sees motion can tell them apart. A triangle wave looks the same played
backwards; the falling set (a square that only moves down) does not, for the arrow-of-time
pretext (core/pretext.py). Used by the trainer's tests and by
`bench/gpu_check.py --quick` (a short real training run that must learn).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

RHYTHM_PERIODS = {"fast": 4, "slow": 16}


def write_rhythm_video(path, period: int, rng, n_frames: int = 24, size: int = 40, square: int = 8,
                       falling: bool = False) -> Path:
    """An MJPG .avi of the square moving with `period` frames per back-and-forth, at a random phase
    and height; `falling`: moving down instead, all the way (period <= 8) or half the way, never resting."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (size, size))
    if not writer.isOpened():
        raise OSError(f"cv2.VideoWriter cannot write {path}")
    span = size - square - 4  # pixels the square travels in half a period
    phase, y = rng.integers(0, period), rng.integers(2, size - square - 2)
    top = rng.uniform(0, 4)
    for t in range(n_frames):
        u = ((t + phase) % period) / period  # position in the cycle, 0..1
        x = 2 + round(span * (2 * u if u < 0.5 else 2 - 2 * u))
        if falling:  # x fixed at a random place, y grows: the arrow of time is visible
            x, y = 2 + phase * span // period, round(top + t * span / n_frames * min(1.0, 8 / period))
        frame = np.full((size, size, 3), 30, np.uint8)
        frame[y : y + square, x : x + square] = 230
        writer.write(frame)
    writer.release()
    return path


def write_rhythm_dataset(root, per_class: int, seed: int, split: str = "train", periods=None,
                         falling: bool = False) -> Path:
    """root/<split>/<class>_<k>.avi and a list file root/<split>.txt (`<relative path> <class>`)."""
    root, rng = Path(root), np.random.default_rng(seed)
    lines = []
    for name, period in (periods or RHYTHM_PERIODS).items():
        for k in range(per_class):
            rel = f"{split}/{name}_{k}.avi"
            write_rhythm_video(root / rel, period, rng, falling=falling)
            lines.append(f"{rel} {name}\n")
    (root / f"{split}.txt").write_text("".join(lines))
    return root / f"{split}.txt"


def write_rhythm_set(root, train_per_class: int = 12, val_per_class: int = 6, falling: bool = False) -> Path:
    """root/train.txt, root/val.txt (other seeds) and root/classes.txt: a list-layout dataset."""
    root = Path(root)
    write_rhythm_dataset(root, train_per_class, seed=1, split="train", falling=falling)
    write_rhythm_dataset(root, val_per_class, seed=2, split="val", falling=falling)
    (root / "classes.txt").write_text("".join(f"{name}\n" for name in RHYTHM_PERIODS))
    return root
