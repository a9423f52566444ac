"""core.data.video: exact frames, RGB out, bounded size, clear errors, lying containers, real clips."""

import cv2
import numpy as np
import pytest

from core.data import video as video_mod
from core.data.video import DataWarning, VideoError, probe_video, read_frames, read_video, to_rgb

# From ../shared/data/README.md: frames, width, height.
REAL_CLIPS = {
    "mmaction2_demo_demo.mp4": (280, 340, 256),
    "mmaction2_tests_data_test.mp4": (300, 340, 256),
    "mmaction2_tests_data_test.avi": (164, 320, 240),
    "paddlevideo_example.avi": (131, 320, 240),
    "v_CricketShot_g04_c01_rgb.gif": (79, 224, 224),
}


@pytest.fixture(scope="module")
def video100(tmp_path_factory):
    from conftest import write_index_video

    return write_index_video(tmp_path_factory.mktemp("v") / "v100.avi", 100)


def test_read_frames_returns_exactly_the_frames_asked_in_order(video100, frame_index):
    asked = [5, 0, 5, 99, 42, 42, 1]
    frames = read_frames(video100, asked)
    assert frames.shape == (len(asked), 48, 80, 3) and frames.dtype == np.uint8
    assert [frame_index(f) for f in frames] == asked


def test_frames_are_rgb(video100):
    frame = read_frames(video100, [0])[0]
    r, g, b = frame[:8].reshape(-1, 3).mean(0)  # the bar is pure red, written as BGR
    assert r > 200 and g < 60 and b < 60


def test_read_frames_decodes_only_up_to_the_last_needed(video100, monkeypatch, frame_index):
    calls = {"grab": 0, "retrieve": 0}
    real = cv2.VideoCapture

    class Counting:
        def __init__(self, *a):
            self.cap = real(*a)

        def grab(self):
            calls["grab"] += 1
            return self.cap.grab()

        def retrieve(self):
            calls["retrieve"] += 1
            return self.cap.retrieve()

        def __getattr__(self, name):
            return getattr(self.cap, name)

    monkeypatch.setattr(video_mod.cv2, "VideoCapture", Counting)
    frames = read_frames(video100, [30, 10, 10, 20])
    assert [frame_index(f) for f in frames] == [30, 10, 10, 20]
    assert calls == {"grab": 31, "retrieve": 3}


def test_max_side_downsizes_while_decoding(video100, frame_index):
    frames = read_frames(video100, [3, 77], max_side=40)
    assert frames.shape == (2, 24, 40, 3)
    assert [frame_index(f) for f in frames] == [3, 77]
    assert read_frames(video100, [0], max_side=1000).shape == (1, 48, 80, 3)  # never upscales


def test_probe(video100):
    info = probe_video(video100)
    assert (info.num_frames, info.width, info.height, info.fps) == (100, 80, 48, 25.0)
    assert not info.fps_assumed and not info.frames_counted


def test_probe_counts_frames_and_assumes_fps_when_the_container_gives_none(video100, monkeypatch):
    real = cv2.VideoCapture

    class Lying:
        def __init__(self, *a):
            self.cap = real(*a)

        def get(self, prop):
            return {cv2.CAP_PROP_FRAME_COUNT: 0.0, cv2.CAP_PROP_FPS: 0.0}.get(prop, self.cap.get(prop))

        def __getattr__(self, name):
            return getattr(self.cap, name)

    monkeypatch.setattr(video_mod.cv2, "VideoCapture", Lying)
    info = probe_video(video100)
    assert info.num_frames == 100 and info.frames_counted
    assert info.fps == 25.0 and info.fps_assumed
    assert read_video(video100, max_frames=2)[1] == 25.0


def test_truncated_file_repeats_last_decoded_frame_with_a_warning(video100, tmp_path, frame_index):
    data = video100.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])  # header still promises 100 frames
    assert probe_video(cut).num_frames == 100
    real_count = probe_video(cut, count=True).num_frames
    assert 10 < real_count < 100
    with pytest.warns(DataWarning, match="cut.avi"):
        frames = read_frames(cut, [0, 95, 5])
    assert [frame_index(f) for f in frames] == [0, real_count - 1, 5]


def test_a_header_one_frame_longer_than_the_stream_is_not_called_truncated(video100, tmp_path, frame_index, recwarn):
    """Headers are often one frame off; a gap of exactly one frame is filled quietly, two are reported."""
    data = video100.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    real = probe_video(cut, count=True).num_frames
    frames = read_frames(cut, [0, real])  # one past the last frame the stream holds
    assert [frame_index(f) for f in frames] == [0, real - 1] and not recwarn.list
    notes = []
    read_frames(cut, [0, real + 1], on_short=notes.append)
    assert len(notes) == 1 and "stream ended after" in notes[0]


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.avi", b"", "empty file"),
        ("notes.avi", b"hello, this is text\n" * 20, "cannot open"),
        ("noise.mp4", bytes(range(256)) * 20, "cannot open"),
    ],
)
def test_bad_files_raise_video_error_naming_the_file(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    for call in (lambda: probe_video(path), lambda: read_frames(path, [0]), lambda: read_video(path)):
        with pytest.raises(VideoError, match=reason) as err:
            call()
        assert name in str(err.value)
        assert isinstance(err.value, ValueError)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(VideoError, match="not found.*nope.avi"):
        read_frames(tmp_path / "nope.avi", [0])
    with pytest.raises(VideoError, match="not a file"):
        probe_video(tmp_path)


def test_read_video_every_and_max_frames(video100, frame_index):
    frames, fps = read_video(video100, every=3)
    assert [frame_index(f) for f in frames] == list(range(0, 100, 3))
    assert fps == pytest.approx(25.0 / 3)
    frames, _ = read_video(video100, max_frames=4, every=2, max_side=40)
    assert frames.shape == (4, 24, 40, 3)
    assert [frame_index(f) for f in frames] == [0, 2, 4, 6]


def test_to_rgb_handles_grey_and_alpha():
    grey = np.full((4, 5), 77, np.uint8)
    assert to_rgb(grey).shape == (4, 5, 3) and (to_rgb(grey) == 77).all()
    assert to_rgb(grey[..., None]).shape == (4, 5, 3)
    bgra = np.zeros((4, 5, 4), np.uint8)
    bgra[..., 0] = 255  # blue
    assert tuple(to_rgb(bgra)[0, 0]) == (0, 0, 255)
    deep = np.full((2, 2, 3), 65535, np.uint16)
    assert (to_rgb(deep) == 255).all()


def test_greyscale_video_comes_out_rgb(tmp_path):
    path = tmp_path / "grey.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24), isColor=False)
    for i in range(5):
        writer.write(np.full((24, 32), 40 * i, np.uint8))
    writer.release()
    frames = read_frames(path, [4, 1])
    assert frames.shape == (2, 24, 32, 3)
    assert abs(int(frames[0].mean()) - 160) < 6 and abs(int(frames[1].mean()) - 40) < 6


@pytest.mark.parametrize("name", sorted(REAL_CLIPS))
def test_real_clips_decode(shared_data, name):
    n, w, h = REAL_CLIPS[name]
    path = shared_data / "clips" / name
    info = probe_video(path)
    assert (info.num_frames, info.width, info.height) == (n, w, h)
    assert 1 <= info.fps <= 60
    frames = read_frames(path, [n - 1, 0, n // 2], max_side=128)
    assert frames.shape[0] == 3 and max(frames.shape[1:3]) == 128 and frames.dtype == np.uint8
    assert frames.std() > 5  # real pictures, not blank frames
    full, fps = read_video(path, every=4)
    assert len(full) == len(range(0, n, 4)) and full.shape[1:] == (h, w, 3)
    assert fps == pytest.approx(info.fps / 4)
