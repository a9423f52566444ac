"""core.preview: which uploads the browser cannot play, and the capped H.264 copy shown instead."""
from __future__ import annotations

import numpy as np
import pytest

from core.attention_maps import write_video
from core.data.video import VideoError, probe_video, read_video
from core.preview import PreviewLimits, browser_preview, needs_preview, video_codec


def test_mjpg_avi_needs_a_preview_and_h264_mp4_does_not(make_video, tmp_path):
    avi = make_video(tmp_path / "a.avi", 10)
    assert video_codec(avi) == "mjpeg" and needs_preview(avi)
    mp4 = write_video(np.zeros((4, 32, 32, 3), np.uint8), tmp_path / "b.mp4", 10)
    assert video_codec(mp4) == "h264" and not needs_preview(mp4)
    mkv = mp4.rename(tmp_path / "b.mkv")  # H.264 in Matroska: Chromium plays it
    assert not needs_preview(mkv)
    assert needs_preview(mp4.with_name("missing.mp4"))  # cannot tell: make one (and fail there, clearly)


def test_preview_is_capped_in_length_size_and_rate_and_keeps_the_pictures(make_video, frame_index, tmp_path):
    avi = make_video(tmp_path / "long.avi", 100, width=160, height=96, fps=25.0)  # 4 s at 25 fps
    limits = PreviewLimits(max_seconds=2.0, max_side=80, max_fps=10.0)
    out = browser_preview(avi, tmp_path / "out", limits)
    info = probe_video(out, count=True)
    assert out.name == "long.preview.mp4" and video_codec(out) == "h264"
    assert max(info.width, info.height) <= 80 and info.width % 2 == 0 and info.height % 2 == 0
    assert info.fps <= 10.0 and info.num_frames / info.fps <= 2.0 + 1e-6
    frames, _ = read_video(out)
    big = browser_preview(avi, tmp_path / "big", PreviewLimits(max_seconds=10, max_side=480, max_fps=30))
    assert [frame_index(f) for f in read_video(big)[0][:3]] == [0, 1, 2]  # the same pictures, in order
    assert len(frames) == info.num_frames


def test_bad_input_gets_a_video_error_and_bad_limits_a_value_error(tmp_path):
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"not a video" * 10)
    with pytest.raises(VideoError):
        browser_preview(junk, tmp_path / "out")
    with pytest.raises(ValueError, match="PreviewLimits"):
        PreviewLimits(max_seconds=0)
