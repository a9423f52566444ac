"""Motion region of interest: where the person is, from how much each pixel changes over time.

The gesture set films a person at 1, 4 and 6 m with a fixed camera; at 6 m the person is about a
tenth of the frame's width, so a 112 px clip of the whole frame leaves a few pixels per arm. The
per-pixel temporal standard deviation of a static-camera video outlines what moves (the person),
so cropping a square around it normalises scale across distances. With a moving camera every
pixel changes and the region grows to the whole frame: the crop then degrades to no crop.
"""
from __future__ import annotations

import cv2
import numpy as np

PROBE_SIDE = 160  # the motion map is computed on frames this wide: cheap and smooth enough


MOVING_FRACTION = 0.3  # a pixel moves when its temporal change is at least this fraction of the largest


def _moving(frames: np.ndarray, fraction: float = MOVING_FRACTION) -> tuple[np.ndarray, float]:
    """(mask (h', w') of pixels changing by at least `fraction` of the most changing one, on
    frames PROBE_SIDE wide; scale h'/h)."""
    h, w = frames.shape[1:3]
    scale = min(1.0, PROBE_SIDE / w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # Area resizing averages out compression noise that a strided subsample would keep.
    gray = np.stack([cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA) for f in frames])
    motion = cv2.GaussianBlur(gray.astype(np.float32).std(axis=0), (5, 5), 0)  # (h', w')
    threshold = max(4.0, fraction * float(motion.max()))
    return motion > threshold, scale


def moving_mask(frames: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels of `frames` (T, H, W, 3) uint8 whose temporal change marks them as
    moving (the region motion_box crops to); all False when nothing moves or T < 2."""
    t, h, w = frames.shape[:3]
    if t < 2:
        return np.zeros((h, w), dtype=bool)
    mask, _ = _moving(frames)
    return cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


def motion_box(frames: np.ndarray, margin: float = 0.25, min_side: float = 0.35,
               fraction: float = MOVING_FRACTION) -> tuple[int, int, int, int]:
    """A square box (y0, x0, y1, x1) in pixel coordinates of `frames` (T, H, W, 3) uint8 around
    the moving region, grown by `margin` of its side and at least `min_side` x the short side. A
    higher `fraction` keeps only what moves most (the hands rather than the swaying body)."""
    t, h, w = frames.shape[:3]
    if t < 2:
        return 0, 0, h, w
    mask, scale = _moving(frames, fraction)
    ys, xs = np.nonzero(mask)
    if len(ys) < 4:  # nothing moves: keep the whole frame
        return 0, 0, h, w
    # Robust extent: ignore isolated flicker pixels at the 1st/99th percentiles.
    y0, y1 = (np.percentile(ys, [1, 99]) / scale).astype(int)
    x0, x1 = (np.percentile(xs, [1, 99]) / scale).astype(int)
    side = max(y1 - y0, x1 - x0) * (1 + 2 * margin)
    side = int(min(max(side, min_side * min(h, w)), min(h, w)))
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    top = int(np.clip(cy - side / 2, 0, h - side))
    left = int(np.clip(cx - side / 2, 0, w - side))
    return top, left, top + side, left + side


def crop_box(frames: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    y0, x0, y1, x1 = box
    return frames[:, y0:y1, x0:x1]
