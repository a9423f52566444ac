"""A copy of a video the browser can play, for showing only: recognition reads the original.

Chromium plays H.264, VP8, VP9, AV1 (and Theora in Ogg) in MP4, MOV, WebM, Matroska and Ogg; an AVI (MJPG, XviD), a
GIF, WMV, FLV, MPEG-1/2 or 3GP upload gets "Video not playable" instead. `browser_preview` writes
such a file as H.264 MP4 (PyAV's libx264, yuv420p, +faststart), capped in length, frame rate
and size so that a long upload cannot make a large preview; `needs_preview` says which files
need one (from the container and the video codec, probed with PyAV).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import av

from .attention_maps import write_video
from .data.video import probe_video, read_video

PLAYABLE_CONTAINERS = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".ogv")
PLAYABLE_CODECS = ("h264", "vp8", "vp9", "av1", "theora")


@dataclass(frozen=True)
class PreviewLimits:
    max_seconds: float = 15.0
    max_side: int = 480
    max_fps: float = 15.0

    def __post_init__(self) -> None:
        if self.max_seconds <= 0 or self.max_side < 16 or self.max_fps <= 0:
            raise ValueError(f"PreviewLimits need max_seconds > 0, max_side >= 16, max_fps > 0; got {self}")


def video_codec(path: str | Path) -> str | None:
    """The first video stream's codec name (e.g. "h264", "mjpeg"), or None when PyAV cannot tell."""
    try:
        with av.open(str(path)) as container:
            streams = container.streams.video
            return streams[0].codec_context.name if streams else None
    except Exception:  # noqa: BLE001 - any failure means "cannot tell": make a preview
        return None


def needs_preview(path: str | Path) -> bool:
    path = Path(path)
    return not (path.suffix.lower() in PLAYABLE_CONTAINERS and video_codec(path) in PLAYABLE_CODECS)


def browser_preview(path: str | Path, out_dir: str | Path, limits: PreviewLimits = PreviewLimits()) -> Path:
    """`path` as H.264 MP4 in out_dir (named after it), at most limits.max_seconds long, its longer
    side at most limits.max_side, at most limits.max_fps. VideoError for a file that cannot be read."""
    path = Path(path)
    info = probe_video(path)
    every = max(1, math.ceil(info.fps / limits.max_fps))
    frames, fps = read_video(path, max_frames=max(1, int(limits.max_seconds * info.fps / every)),
                             max_side=limits.max_side, every=every)
    return write_video(frames, Path(out_dir) / f"{path.stem}.preview.mp4", fps)
