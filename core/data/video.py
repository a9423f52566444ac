"""Video decoding with OpenCV: probe a file, read only the frames a clip needs.

Why sequential grab()/retrieve() and not CAP_PROP_POS_FRAMES seeks: seeking is keyframe-accurate
at best in OpenCV's FFmpeg backend and silently returns neighbouring frames in some containers;
grab() only demuxes and decodes, and retrieve() (the colour conversion and copy) runs only for the
frames asked for, so reading a 32-frame clip costs one pass up to its last frame.

Containers lie: AVI headers from some encoders give a frame count of 0 or a wrong one, and GIFs or
streams give fps 0 (or an absurd one). `probe_video` counts by grabbing when the count is unusable and assumes 25 fps
(flagged in `VideoInfo.fps_assumed`); `read_frames` repeats the last decoded frame (with a warning)
when the file ends before the frames it was promised.

Frames come out as (N, H, W, 3) uint8 RGB whatever the source (grey, BGRA, BGR).
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Sequence

import cv2
import numpy as np

log = logging.getLogger(__name__)

DEFAULT_FPS = 25.0
MAX_PLAUSIBLE_FPS = 1000.0
# Below this (one frame every 10 s) a container's fps is a lie, not a time-lapse: 1e-5 fps would
# make a 10-frame clip "last" 11 days and a decode cap of N seconds keep a single frame.
MIN_PLAUSIBLE_FPS = 0.1
# A frame count above this is a corrupt header, not a video (10^7 frames = 4.6 days at 25 fps).
MAX_PLAUSIBLE_FRAMES = 10_000_000


class VideoError(ValueError):
    """A video file that cannot be used; the message names the file and says what is wrong."""


class DataWarning(UserWarning):
    """Recoverable data problems (a file shorter than its header says, a skipped video)."""


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    num_frames: int
    fps: float
    width: int
    height: int
    fps_assumed: bool = False  # the container gave no usable fps; DEFAULT_FPS is used
    frames_counted: bool = False  # the container's frame count was unusable; counted by decoding

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps


def _usable_fps(fps: float) -> bool:
    return math.isfinite(fps) and MIN_PLAUSIBLE_FPS <= fps <= MAX_PLAUSIBLE_FPS


# Bytes a text file never holds (C0 controls other than tab, newlines, form feed and escape);
# every binary container has some in its first 4 KB (NULs in sizes, 0x1A in Matroska, ...).
_BINARY_BYTES = bytes(set(range(32)) - set(b"\t\n\v\f\r\x1b"))


def non_video_kind(path: Path) -> str | None:
    """"a still image (PNG)", "a text file", ... when the file's first bytes say it is one of
    those, else None. FFmpeg opens a still image as a one-frame video, and renders a .txt file
    (its tty demuxer) as frames of text: neither holds an action, so both are refused by name.
    GIF is never refused (animated GIFs are videos here), nor an animated PNG or WebP."""
    try:
        with path.open("rb") as f:
            head = f.read(16384)
    except OSError:
        return None
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        idat, actl = head.find(b"IDAT"), head.find(b"acTL")
        return None if actl != -1 and (idat == -1 or actl < idat) else "a still image (PNG)"  # acTL first: APNG
    if head.startswith(b"\xff\xd8\xff"):
        return "a still image (JPEG)"
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in (12, 40, 52, 56, 108, 124):
        return "a still image (BMP)"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "a still image (TIFF)"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and b"ANIM" not in head[12:64]:
        return "a still image (WebP)"
    if head and not any(b in _BINARY_BYTES for b in head[:4096]):
        return "a text file"
    return None


def _open(path: str | Path) -> tuple[Path, cv2.VideoCapture]:
    """Open a capture, or raise VideoError saying why not (missing, empty, an image, not a video)."""
    path = Path(path)
    if not path.exists():
        raise VideoError(f"video not found: {path}")
    if not path.is_file():
        raise VideoError(f"not a file (a folder?): {path}")
    if path.stat().st_size == 0:
        raise VideoError(f"empty file (0 bytes), not a video: {path}")
    kind = non_video_kind(path)
    if kind is not None:
        raise VideoError(f"cannot open {path} as a video: it is {kind}, not a video")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VideoError(
            f"cannot open {path} as a video: not a video file, corrupt, or a codec OpenCV's FFmpeg lacks"
        )
    return path, cap


def to_rgb(frame: np.ndarray) -> np.ndarray:
    """OpenCV frame (H,W), (H,W,1), (H,W,3) BGR or (H,W,4) BGRA, any int depth -> (H,W,3) uint8 RGB."""
    if frame.dtype != np.uint8:  # 16-bit sources: keep the top byte
        frame = (frame.astype(np.float32) * (255.0 / np.iinfo(frame.dtype).max)).round().astype(np.uint8)
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(w, h) with the longer side at most max_side, aspect kept; never upscales."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _convert(frame: np.ndarray, max_side: int | None) -> np.ndarray:
    """Downsize first (fewer pixels to convert), then to RGB."""
    h, w = frame.shape[:2]
    size = scaled_size(w, h, max_side)
    if size != (w, h):
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    return to_rgb(frame)


def _count_frames(cap: cv2.VideoCapture) -> int:
    n = 0
    while cap.grab():
        n += 1
    return n


def probe_video(path: str | Path, count: bool = False) -> VideoInfo:
    """Frame count, fps and size of a video; decodes the first frame to prove it is readable.

    count=True always counts frames by decoding (exact, costs a full pass); otherwise the
    container's count is trusted unless it is <= 0 or implausibly large.
    """
    path, cap = _open(path)
    try:
        n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        fps = cap.get(cv2.CAP_PROP_FPS)
        ok = cap.grab()
        first = cap.retrieve()[1] if ok else None
        if first is None:
            raise VideoError(f"no decodable frames in {path} (zero frames or corrupt stream)")
        height, width = first.shape[:2]
        counted = count or not math.isfinite(n) or n <= 0 or n > MAX_PLAUSIBLE_FRAMES
        if counted:
            n = 1 + _count_frames(cap)
    finally:
        cap.release()
    fps_assumed = not _usable_fps(fps)
    return VideoInfo(
        path=path,
        num_frames=int(n),
        fps=DEFAULT_FPS if fps_assumed else float(fps),
        width=int(width),
        height=int(height),
        fps_assumed=fps_assumed,
        frames_counted=counted,
    )


# Containers' frame counts are often one more than the stream holds (edit lists, a last B-frame,
# rounding of duration x fps); a gap that small is not reported as a truncated file.
HEADER_SLACK_FRAMES = 1


def read_frames(
    path: str | Path,
    indices: Sequence[int] | np.ndarray,
    max_side: int | None = None,
    on_short: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Frames at `indices` (any order, repeats allowed) -> (N,H,W,3) uint8 RGB, in the order asked.

    Decodes sequentially up to the largest index and converts only the frames asked for. If the
    file ends before an index (its header promised more frames), the last decoded frame stands in
    for the missing ones and a DataWarning says so (or `on_short(message)` is called instead, for
    a caller that shows it: warnings cannot be caught per thread). max_side downsizes while
    decoding (INTER_AREA), so a long high-resolution video never sits in memory at full size.
    """
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError("read_frames needs at least one frame index")
    if idx.min() < 0:
        raise ValueError(f"frame indices must be >= 0, got {int(idx.min())}")
    wanted = set(idx.tolist())
    last = int(idx.max())
    path, cap = _open(path)
    got: dict[int, np.ndarray] = {}
    pos = 0  # frames grabbed so far
    try:
        while pos <= last:
            if not cap.grab():
                break
            if pos in wanted:
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    break
                got[pos] = _convert(frame, max_side)
            pos += 1
    finally:
        cap.release()
    if pos <= last:  # ended early: the container promised more frames than the stream holds
        tail = got.get(pos - 1)
        if tail is None and pos > 0:
            tail = _last_frame(path, pos - 1, max_side)
        if tail is None:
            raise VideoError(f"no decodable frames in {path} (zero frames or corrupt stream)")
        missing = sorted(i for i in wanted if i not in got)
        if last - pos + 1 <= HEADER_SLACK_FRAMES:  # the header's count is one off, not a damaged file
            log.debug("%s: header promises frame %d, stream holds %d frames", path, last, pos)
            for i in missing:
                got[i] = tail
            return np.stack([got[i] for i in idx.tolist()])
        message = (
            f"{path}: stream ended after {pos} frames but frame {last} was asked for; "
            f"repeating frame {pos - 1} for {len(missing)} missing index(es)"
        )
        if on_short is not None:
            on_short(message)
        else:
            warnings.warn(message, DataWarning, stacklevel=2)
        for i in missing:
            got[i] = tail
    return np.stack([got[i] for i in idx.tolist()])


def _last_frame(path: Path, index: int, max_side: int | None) -> np.ndarray | None:
    """Frame `index` of a file (second pass, only on the rare truncated-file path)."""
    _, cap = _open(path)
    try:
        for _ in range(index):
            cap.grab()
        ok, frame = cap.read()
    finally:
        cap.release()
    return _convert(frame, max_side) if ok and frame is not None else None


def read_video(
    path: str | Path, max_frames: int | None = None, max_side: int | None = None, every: int = 1
) -> tuple[np.ndarray, float]:
    """Every `every`-th frame (up to max_frames of them) -> ((N,H,W,3) uint8 RGB, fps).

    The fps returned is that of the frames returned (source fps / every), so playing them back
    at it keeps real time; a container without a usable fps counts as DEFAULT_FPS.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    path, cap = _open(path)
    frames: list[np.ndarray] = []
    try:
        fps = cap.get(cv2.CAP_PROP_FPS)
        pos = 0
        while max_frames is None or len(frames) < max_frames:
            if not cap.grab():
                break
            if pos % every == 0:
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    break
                frames.append(_convert(frame, max_side))
            pos += 1
    finally:
        cap.release()
    if not frames:
        raise VideoError(f"no decodable frames in {path} (zero frames or corrupt stream)")
    if not _usable_fps(fps):
        fps = DEFAULT_FPS
    return np.stack(frames), float(fps) / every
