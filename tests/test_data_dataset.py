"""core.data.dataset and core.data.cache: clips from files, reproducibility, bad files, the cache."""
import os
import warnings

import numpy as np
import pytest
import torch

from core.data import cache as cache_mod
from core.data.cache import FrameCache
from core.data.clips import ClipConfig, denormalize
from core.data.dataset import VideoClipDataset, collate_windows, load_test_clips, mean_over_windows, scan_videos
from core.data.samples import Sample, VideoList
from core.data.video import DataWarning, read_video

SMALL = ClipConfig(num_frames=4, stride=2, height=32, width=32, max_windows=None)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Three videos (50, 20, 9 frames), one per class, plus a corrupt file (not in the list)."""
    from conftest import write_index_video

    root = tmp_path_factory.mktemp("ds")
    paths = [write_index_video(root / f"v{n}.avi", n) for n in (50, 20, 9)]
    bad = root / "bad.avi"
    bad.write_text("this is not a video\n")
    return paths, bad


def _list(paths, names=("a", "b", "c")):
    return VideoList([Sample(p, i % len(names)) for i, p in enumerate(paths)], list(names))


def test_train_items_are_clips_reproducible_per_seed_epoch_index(videos):
    paths, _ = videos
    ds = VideoClipDataset(_list(paths), SMALL, train=True, seed=3)
    clip, label = ds[0]
    assert clip.shape == (3, 4, 32, 32) and clip.dtype == torch.float32 and label == 0
    again = VideoClipDataset(_list(paths), SMALL, train=True, seed=3)
    assert all(torch.equal(ds[i][0], again[i][0]) for i in range(3))
    first = [ds[i][0] for i in range(3)]
    ds.set_epoch(1)
    assert any(not torch.equal(first[i], ds[i][0]) for i in range(3))
    other = VideoClipDataset(_list(paths), SMALL, train=True, seed=4)
    assert any(not torch.equal(first[i], other[i][0]) for i in range(3))
    assert ds.targets == [0, 1, 2]


def test_eval_items_are_all_windows_of_the_right_frames(videos, frame_index):
    paths, _ = videos
    cfg = ClipConfig(num_frames=4, stride=2, height=48, width=80, max_windows=None)  # whole frame, no resize
    ds = VideoClipDataset(_list(paths), cfg, train=False)
    clips, label = ds[0]  # 50 frames, windows of 8: 6 full windows, tail of 2 dropped
    assert clips.shape == (6, 3, 4, 48, 80) and label == 0
    frames = [[frame_index(f) for f in _to_uint8(c, cfg)] for c in clips]
    assert frames == [[w * 8 + 2 * k for k in range(4)] for w in range(6)]
    clips, _ = ds[2]  # 9 frames: one window, tail of 1 < half dropped -> the one full window
    assert clips.shape[0] == 1


def _to_uint8(clip, cfg):
    return (denormalize(clip, cfg).clamp(0, 1) * 255).round().byte().permute(1, 2, 3, 0).numpy()


def test_collate_windows_and_mean(videos):
    paths, _ = videos
    ds = VideoClipDataset(_list(paths), SMALL, train=False)
    batch = [ds[0], ds[1]]
    clips, labels, counts = collate_windows(batch)
    assert clips.shape[0] == counts.sum() and labels.tolist() == [0, 1]
    assert counts.tolist() == [batch[0][0].shape[0], batch[1][0].shape[0]]
    scores = torch.arange(int(counts.sum()), dtype=torch.float32)[:, None].repeat(1, 3)
    means = mean_over_windows(scores, counts)
    assert means.shape == (2, 3) and means[0, 0] == scores[: counts[0], 0].mean()


def test_flip_swaps_paired_labels(tmp_path):
    import cv2

    path = tmp_path / "left_half.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 32))
    frame = np.zeros((32, 32, 3), np.uint8)
    frame[:, :16] = 255
    for _ in range(8):
        writer.write(frame)
    writer.release()
    names = ["left", "right", "stop"]
    cfg = SMALL.replace(crop_scale=(1.0, 1.0), flip_label_swap=(("left", "right"),))
    videos = VideoList([Sample(path, 0), Sample(path, 2)], names)
    ds = VideoClipDataset(videos, cfg, train=True)
    seen = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        for i in range(2):
            clip, label = ds[i]
            x = denormalize(clip, cfg)
            flipped = bool(x[..., 16:].mean() > x[..., :16].mean())
            expected = {0: 1 if flipped else 0, 1: 2}[i]
            assert label == expected
            seen.add((i, flipped))
    assert (0, True) in seen and (0, False) in seen
    with pytest.warns(DataWarning, match="not among"):
        VideoClipDataset(videos, cfg.replace(flip_label_swap=(("up", "down"),)), train=True)


def test_unreadable_video_is_skipped_once_with_a_warning(videos):
    paths, bad = videos
    vl = VideoList([Sample(bad, 0), Sample(paths[1], 1)], ["a", "b"])
    for train in (True, False):
        ds = VideoClipDataset(vl, SMALL, train=train)
        with pytest.warns(DataWarning, match="bad.avi"):
            clip, label = ds[0]
        assert label == 1  # the next readable sample, with its own label
        assert ds.failed == {bad}
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert ds[0][1] == 1  # no second warning
    only_bad = VideoClipDataset(VideoList([Sample(bad, 0)], ["a"]), SMALL, train=True)
    with pytest.warns(DataWarning), pytest.raises(RuntimeError, match="no readable video"):
        only_bad[0]


def test_scan_videos(videos, tmp_path):
    paths, bad = videos
    missing = tmp_path / "gone.avi"
    report = scan_videos(VideoList([Sample(p, 0) for p in paths] + [Sample(bad, 0), Sample(missing, 0)], ["a"]))
    assert [s.path for s in report.ok] == paths
    assert [p for p, _ in report.bad] == [bad, missing]
    assert "cannot open" in report.bad[0][1] and "not found" in report.bad[1][1]
    assert "3 readable, 2 unreadable" in report.summary()


def test_load_test_clips(videos):
    paths, _ = videos
    clips, windows, info = load_test_clips(paths[0], SMALL)
    assert clips.shape == (len(windows), 3, 4, 32, 32) and info.num_frames == 50


def test_frame_cache_matches_direct_decoding(videos, tmp_path, monkeypatch, frame_index):
    paths, bad = videos
    cache = FrameCache(tmp_path / "cache", max_side=40)
    cached = cache.get(paths[0])
    direct, _ = read_video(paths[0], max_side=40)
    assert isinstance(cached, np.memmap) and cached.shape == (50, 24, 40, 3)
    assert np.array_equal(cached, direct)
    assert not list((tmp_path / "cache").glob("*.tmp"))  # written atomically, no leftovers

    def no_decoding(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(cache_mod, "read_video", no_decoding)
    assert np.array_equal(cache.get(paths[0]), direct)  # second get: from disk
    monkeypatch.undo()
    st = paths[0].stat()
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # "edited": new key
    assert cache.entry(paths[0]) != FrameCache(tmp_path / "cache", max_side=40).entry(paths[1])
    assert not cache.has(paths[0])
    every = FrameCache(tmp_path / "cache", max_side=40, every=3).get(paths[0])
    assert [frame_index(f) for f in every] == list(range(0, 50, 3))


def test_frame_cache_build_and_dataset_use(videos, tmp_path):
    paths, bad = videos
    cache = FrameCache(tmp_path / "cache", max_side=64)
    done = []
    report = cache.build(VideoList([Sample(p, 0) for p in paths] + [Sample(bad, 0)], ["a"]),
                         progress=lambda i, n: done.append((i, n)))
    assert len(report.ok) == 3 and report.bad[0][0] == bad and done[-1] == (4, 4)
    assert all(cache.has(p) for p in paths)
    for train in (True, False):
        with_cache = VideoClipDataset(_list(paths), SMALL, train=train, frame_cache=cache)
        direct = VideoClipDataset(_list(paths), SMALL, train=train, max_side=64)
        for i in range(3):
            assert torch.equal(with_cache[i][0], direct[i][0])


def test_real_gesture_clip_through_the_dataset(shared_data, tmp_path):
    from core.data.gestures import GESTURE_FLIP_SWAP, load_gesture_split

    train, _ = load_gesture_split(shared_data / "gestures")
    few = VideoList(train.samples[:1], train.class_names)
    cfg = ClipConfig(flip_label_swap=GESTURE_FLIP_SWAP, motion_crop=True)
    clip, label = VideoClipDataset(few, cfg, train=True, frame_cache=FrameCache(tmp_path, max_side=160))[0]
    assert clip.shape == (3, 32, 112, 112) and label == few.samples[0].label
    assert torch.isfinite(clip).all() and clip.std() > 0.05
