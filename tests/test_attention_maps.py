"""Attention maps as pictures: overlays land where attention is, time maps cover every frame,
videos come back as H.264 with every frame."""
from __future__ import annotations


import av
import cv2
import numpy as np
import pytest

from core import attention_maps as am


def clip(t=4, h=64, w=64, value=0) -> np.ndarray:
    return np.full((t, h, w, 3), value, np.uint8)


def test_overlay_shapes_dtypes_and_alpha():
    frames = (np.random.default_rng(0).random((5, 48, 80, 3)) * 255).astype(np.uint8)
    out = am.spatial_overlay(frames, np.random.default_rng(1).random((3, 5)))
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert np.array_equal(am.spatial_overlay(frames, np.ones((3, 5)), alpha=0.0), frames)
    flat = am.spatial_overlay(clip(value=100), np.full((3, 5), 0.2))  # no preference: one colour everywhere
    assert len(np.unique(flat.reshape(-1, 3), axis=0)) == 1
    with pytest.raises(ValueError):
        am.spatial_overlay(frames[0], np.ones((3, 5)))
    with pytest.raises(ValueError):
        am.spatial_overlay(frames, np.ones((2, 3, 5)))


def test_hottest_cell_is_where_the_overlay_is_hottest():
    spatial = np.full((4, 4), 0.01)
    spatial[1, 2] = 0.2  # row 1, column 2 of a 4x4 grid over a 64x64 frame: y 16-31, x 32-47
    out = am.spatial_overlay(clip(), spatial, alpha=1.0)
    heat = am.upsample(spatial, 64, 64)
    y, x = np.unravel_index(np.argmax(heat), heat.shape)
    assert 16 <= y < 32 and 32 <= x < 48
    hottest = am.colorize(np.ones((1, 1)))[0, 0]
    ys, xs = np.nonzero(np.all(out[0] == hottest, axis=-1))
    assert len(ys) > 0 and ys.min() >= 16 and ys.max() < 32 and xs.min() >= 32 and xs.max() < 48
    assert np.array_equal(out[0], out[-1])  # one map per clip: the same on every frame
    coldest = am.colorize(np.zeros((1, 1)))[0, 0]
    assert np.array_equal(out[0, 0, 0], coldest)


@pytest.mark.parametrize("steps, frames", [(4, 8), (3, 7), (1, 8), (2, 32), (8, 8)])
def test_temporal_to_frames_covers_every_frame(steps, frames):
    received = np.arange(1, steps + 1, dtype=np.float32)
    spread = am.temporal_to_frames(received, frames)
    assert spread.shape == (frames,)
    assert set(spread.tolist()) == set(received.tolist())  # every step reaches some frame
    assert np.all(np.diff(spread) >= 0)  # in order, contiguous runs
    if frames % steps == 0:
        assert np.array_equal(spread, np.repeat(received, frames // steps))


def test_filmstrip_and_heatmaps():
    frames = (np.random.default_rng(0).random((10, 30, 40, 3)) * 255).astype(np.uint8)
    strip = am.filmstrip(frames, n=4, gap=2)
    assert strip.shape == (30, 4 * 40 + 3 * 2, 3) and strip.dtype == np.uint8
    assert am.filmstrip(frames[:2], n=8, height=15, gap=0).shape == (15, 2 * 20, 3)
    image = am.heatmap_image(np.eye(4), size=64)
    assert image.shape == (64, 64, 3) and np.array_equal(image[0, 0], am.colorize(np.ones((1, 1)))[0, 0])
    assert am.heatmap_png(np.eye(3)).startswith(b"\x89PNG")


def test_write_video_is_h264_with_every_frame(tmp_path):
    frames = np.stack([np.full((45, 61, 3), 20 * i, np.uint8) for i in range(12)])  # odd sides
    path = am.write_video(frames, tmp_path / "out" / "clip.mp4", fps=12.5)
    assert path == tmp_path / "out" / "clip.mp4" and path.is_file()
    assert not [p for p in path.parent.iterdir() if p != path]  # no temp file left behind
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.width, stream.height) == (62, 46)
        assert stream.codec_context.pix_fmt == "yuv420p"
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 12
    assert abs(int(decoded[5].mean()) - 100) <= 3  # the frames are in order
    cap = cv2.VideoCapture(str(path))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    cap.release()
    head = path.read_bytes()
    assert head.find(b"moov") < head.find(b"mdat")  # faststart: playable while loading


def test_write_video_falls_back_to_webm_without_pyav(tmp_path, monkeypatch):
    monkeypatch.setattr(am, "av", None)  # as if `import av` had failed
    frames = np.stack([np.full((32, 32, 3), 10 * i, np.uint8) for i in range(6)])
    try:
        path = am.write_video(frames, tmp_path / "clip.mp4", fps=10)
    except RuntimeError as error:
        pytest.skip(f"this OpenCV build writes no WebM: {error}")
    assert path.suffix == ".webm" and path.stat().st_size > 0
    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    assert count == 6


def test_enlarge_and_view_on_frame():
    from core.attention_maps import enlarge, view_on_frame

    frames = np.random.default_rng(0).integers(0, 255, (3, 150, 140, 3), dtype=np.uint8)
    big = enlarge(frames, 360)
    assert big.shape == (3, round(150 * 360 / 140), 360, 3) and big.dtype == np.uint8
    assert enlarge(big, 360) is big  # already large enough: untouched
    frame = np.full((100, 200, 3), 200, np.uint8)
    out = view_on_frame(frame, (20, 50, 80, 150), dim=0.5)
    assert (out[50, 100] == 200).all() and (out[5, 5] == 100).all()  # inside kept, outside dimmed
    assert tuple(out[20, 100]) == (255, 215, 0)  # the outline
    with pytest.raises(ValueError, match="not inside"):
        view_on_frame(frame, (0, 0, 120, 50))
    small = view_on_frame(frame[:50, :100], (10, 25, 40, 75), dim=0.5, min_side=200)  # enlarged 4x first
    assert small.shape == (200, 400, 3) and tuple(small[40, 200]) == (255, 215, 0) and (small[100, 200] == 200).all()
