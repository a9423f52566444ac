"""Attention maps as pictures a person can read (numpy and OpenCV only; figures live in the app).

- Spatial: a stage's (H_i, W_i) map (attention each position receives) is upsampled bilinearly
  to the frame size, stretched to [0, 1] per map (the absolute values of a softmax over HW keys
  are tiny and differ by stage; where attention sits is what matters), coloured and blended
  over every frame of the clip it was computed from.
- Temporal: the attention each of the stage's T_i time steps receives, spread back over the
  input frames that step covers (stage i sees the clip at T / T_i frames per step).
- Videos: H.264 MP4 (yuv420p, even sides, moov atom first) plays in every browser; OpenCV's WebM
  is the fallback when PyAV is missing.
"""
from __future__ import annotations

import os
import uuid
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

try:  # optional: without PyAV (its wheel carries FFmpeg with libx264), OpenCV writes VP8/VP9 WebM
    import av
except ImportError:  # pragma: no cover - PyAV is in requirements.txt
    av = None

DEFAULT_COLORMAP = cv2.COLORMAP_TURBO  # a rainbow people read as cold -> hot, more even than JET


def _check_frames(frames: np.ndarray) -> None:
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be a (T, H, W, 3) uint8 array, got {getattr(frames, 'shape', type(frames))}")
    if len(frames) == 0:
        raise ValueError("no frames")


def normalise(values: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] as float32; a constant map (no preference anywhere) becomes all zeros."""
    values = np.asarray(values, dtype=np.float32)
    lo, hi = float(values.min()), float(values.max())
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo < 1e-12:
        return np.zeros_like(values)
    return (values - lo) / (hi - lo)


def upsample(spatial_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w) map -> (height, width) float32 in [0, 1]: bilinear (cell centres aligned, as the
    feature map's cells tile the frame), then normalised, so the hottest pixel is exactly 1."""
    values = np.asarray(spatial_map, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(f"a spatial map is (h, w), got shape {values.shape}")
    return normalise(cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR))


def colorize(heat: np.ndarray, colormap: int = DEFAULT_COLORMAP) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) uint8 RGB."""
    scaled = np.clip(np.round(heat * 255), 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(scaled, colormap), cv2.COLOR_BGR2RGB)


def spatial_overlay(
    frames: np.ndarray, spatial_map: np.ndarray, alpha: float = 0.45, colormap: int = DEFAULT_COLORMAP
) -> np.ndarray:
    """Blend one clip's spatial attention map over each of its frames.

    frames (T, H, W, 3) uint8 RGB, spatial_map (h, w) -> (T, H, W, 3) uint8 RGB.
    """
    _check_frames(frames)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    h, w = frames.shape[1:3]
    color = colorize(upsample(spatial_map, h, w), colormap).astype(np.float32)  # (H, W, 3)
    blended = frames.astype(np.float32) * (1.0 - alpha) + color[None] * alpha  # (T, H, W, 3)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def enlarge(frames: np.ndarray, min_side: int = 360) -> np.ndarray:
    """Frames scaled up (Lanczos) so that their short side is at least min_side; as they are when
    it already is. The model's view of a gesture is often 130-180 px: a video player stretching
    it to 500 px blurs it, an export at this size stays sharp."""
    _check_frames(frames)
    h, w = frames.shape[1:3]
    if min(h, w) >= min_side:
        return frames
    scale = min_side / min(h, w)
    size = (round(w * scale), round(h * scale))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_LANCZOS4) for f in frames])


def view_on_frame(frame: np.ndarray, box: tuple[int, int, int, int], dim: float = 0.4,
                  color: tuple[int, int, int] = (255, 215, 0), min_side: int = 0) -> np.ndarray:
    """A whole (H, W, 3) uint8 frame with what lies outside `box` (y0, x0, y1, x1) dimmed to
    `dim` and the box outlined: the region the model saw, and what it did not. With min_side,
    the picture is first enlarged (`enlarge`) so its short side is at least that."""
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be (H,W,3) uint8, got {frame.shape} {frame.dtype}")
    y0, x0, y1, x1 = box
    h, w = frame.shape[:2]
    if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
        raise ValueError(f"box {box} is not inside a {h}x{w} frame")
    if min(h, w) < min_side:
        frame = enlarge(frame[None], min_side)[0]
        sy, sx = frame.shape[0] / h, frame.shape[1] / w
        (y0, y1), (x0, x1), (h, w) = (round(y0 * sy), round(y1 * sy)), (round(x0 * sx), round(x1 * sx)), frame.shape[:2]
    out = (frame.astype(np.float32) * dim).astype(np.uint8)
    out[y0:y1, x0:x1] = frame[y0:y1, x0:x1]
    thick = max(1, round(min(h, w) / 120))
    cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), color, thick)
    return out


def temporal_to_frames(received: np.ndarray, num_input_frames: int) -> np.ndarray:
    """(T_i,) attention per time step of a stage -> (num_input_frames,): each input frame gets the
    value of the step that covers it (step k covers frames [k N / T_i, (k + 1) N / T_i))."""
    received = np.asarray(received, dtype=np.float32).reshape(-1)
    if received.size == 0 or num_input_frames < 1:
        raise ValueError(f"need a non-empty map and >= 1 frame, got {received.size} steps, {num_input_frames} frames")
    step = (np.arange(num_input_frames) * received.size) // num_input_frames  # (N,) in [0, T_i)
    return received[step]


def filmstrip(frames: np.ndarray, n: int = 8, height: int | None = None, gap: int = 2) -> np.ndarray:
    """n evenly spaced frames side by side -> (h, n*w + gaps, 3) uint8; optional resize to `height`."""
    _check_frames(frames)
    picks = np.unique(np.linspace(0, len(frames) - 1, min(n, len(frames))).round().astype(int))
    tiles = list(frames[picks])
    if height is not None and height != tiles[0].shape[0]:
        width = max(1, round(tiles[0].shape[1] * height / tiles[0].shape[0]))
        tiles = [cv2.resize(t, (width, height), interpolation=cv2.INTER_AREA) for t in tiles]
    spacer = np.full((tiles[0].shape[0], gap, 3), 255, np.uint8)
    parts = [p for t in tiles for p in (t, spacer)][:-1] if gap > 0 else tiles
    return np.concatenate(parts, axis=1)


def heatmap_image(matrix: np.ndarray, size: int = 256, colormap: int = DEFAULT_COLORMAP) -> np.ndarray:
    """A small matrix (a (T_i, T_i) temporal map, a 4x4 similarity) as a (size, size, 3) RGB
    picture with crisp cells (nearest-neighbour), normalised to [0, 1]."""
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"a heat map is 2-D, got shape {matrix.shape}")
    heat = cv2.resize(normalise(matrix), (size, size), interpolation=cv2.INTER_NEAREST)
    return colorize(heat, colormap)


def heatmap_png(matrix: np.ndarray, size: int = 256, colormap: int = DEFAULT_COLORMAP) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(heatmap_image(matrix, size, colormap), cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return data.tobytes()


# ---------------------------------------------------------------------- video files


def _even(frames: np.ndarray) -> np.ndarray:
    """yuv420p needs even sides: repeat the last row/column where a side is odd."""
    h, w = frames.shape[1:3]
    pad = ((0, 0), (0, h % 2), (0, w % 2), (0, 0))
    return np.pad(frames, pad, mode="edge") if h % 2 or w % 2 else frames


def write_video(frames: np.ndarray, path: str | Path, fps: float) -> Path:
    """(T, H, W, 3) uint8 RGB -> a video file; returns the path actually written.

    H.264 MP4 through PyAV (libx264, yuv420p, +faststart so browsers start playing at once);
    without PyAV, VP8/VP9 WebM through OpenCV at `path` with a .webm suffix. The file appears
    under its final name only when complete.
    """
    _check_frames(frames)
    if not fps or fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if av is None:
        path = path.with_suffix(".webm")
        writer = _write_webm
    else:
        path = path.with_suffix(".mp4") if path.suffix.lower() != ".mp4" else path
        writer = _write_mp4
    tmp = path.with_name(f".{path.stem}.tmp-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        writer(_even(frames), tmp, fps)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _write_mp4(frames: np.ndarray, path: Path, fps: float) -> None:
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())  # flush the encoder


def _write_webm(frames: np.ndarray, path: Path, fps: float) -> None:
    h, w = frames.shape[1:3]
    for codec in ("VP80", "VP90"):
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), float(fps), (w, h))
        if writer.isOpened():
            try:
                for frame in frames:
                    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            finally:
                writer.release()
            return
        writer.release()
    raise RuntimeError("no video writer available: PyAV is missing and OpenCV cannot write VP8/VP9 WebM")
