"""core.data.clips: the index math of section 7's sampling, and the transforms' shapes and numbers."""
import json

import numpy as np
import pytest
import torch

from core.data.clips import (
    ClipConfig,
    clip_to_frames,
    decode_max_side,
    denormalize,
    normalize,
    test_transform,
    test_windows,
    train_indices,
    train_transform,
)

CFG = ClipConfig()  # 32 frames, stride 2: 64-frame windows


def test_config_defaults_and_json_round_trip():
    assert CFG.window == 64 and (CFG.height, CFG.width) == (112, 112)
    cfg = ClipConfig(num_frames=8, flip_label_swap=(("left", "right"),), max_windows=None, crop_scale=(0.8, 1.0))
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["flip_label_swap"] == [["left", "right"]] and d["crop_scale"] == [0.8, 1.0]
    back = ClipConfig.from_dict(d)
    assert back == cfg and isinstance(back.flip_label_swap[0], tuple) and isinstance(back.mean, tuple)
    assert ClipConfig.from_dict({}) == ClipConfig()


@pytest.mark.parametrize(
    "bad", [{"num_frames": 0}, {"crop_scale": (0.0, 1.0)}, {"crop_scale": (0.9, 0.5)}, {"std": (1.0, 0.0, 1.0)},
            {"flip_label_swap": (("a",),)}, {"max_windows": 0}],
)
def test_config_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        ClipConfig(**bad)
    with pytest.raises(ValueError, match="unknown"):
        ClipConfig.from_dict({"num_frame": 3})


def test_train_indices_long_video():
    starts = set()
    for seed in range(300):
        idx = train_indices(100, CFG, np.random.default_rng(seed))
        assert idx.shape == (32,) and idx.dtype == np.int64
        assert (np.diff(idx) == 2).all() and idx[0] >= 0 and idx[-1] <= 99
        starts.add(int(idx[0]))
    assert starts == set(range(0, 100 - 64 + 1))  # every window position is reachable
    assert (train_indices(64, CFG, np.random.default_rng(0)) == np.arange(0, 64, 2)).all()


def test_train_indices_short_video_loops_in_order():
    for seed in range(20):
        idx = train_indices(18, CFG, np.random.default_rng(seed))
        assert idx.shape == (32,) and idx.min() >= 0 and idx.max() < 18
        assert idx[0] in (0, 1)  # first pass starts at the beginning: the action keeps its order
        expected = (idx[0] + np.arange(32) * 2) % 18
        assert (idx == expected).all()
    assert (train_indices(1, CFG, np.random.default_rng(0)) == 0).all()
    with pytest.raises(ValueError):
        train_indices(0, CFG, np.random.default_rng(0))


def _check_windows(windows, n):
    flat = np.concatenate(windows)
    assert all(w.shape == (32,) for w in windows) and flat.min() >= 0 and flat.max() < n
    spans = [set(range(w.min(), w.max() + 1)) for w in windows]
    assert all(not (a & b) for i, a in enumerate(spans) for b in spans[i + 1 :])  # no overlap


def test_test_windows_cover_the_video():
    windows = test_windows(192, CFG)
    assert len(windows) == 3
    assert [int(w[0]) for w in windows] == [0, 64, 128]
    assert all((np.diff(w) == 2).all() for w in windows)
    _check_windows(windows, 192)
    # A tail of 38 frames (>= half a window) is kept, looping within itself.
    windows = test_windows(230, CFG)
    assert len(windows) == 4 and set(windows[-1].tolist()) <= set(range(192, 230))
    assert windows[-1][0] == 192
    _check_windows(windows, 230)
    # A tail of 31 frames (< half) is dropped.
    assert len(test_windows(223, CFG)) == 3


def test_test_windows_short_video_is_one_looped_window():
    (window,) = test_windows(20, CFG)
    assert (window == (np.arange(32) * 2) % 20).all()
    (window,) = test_windows(1, CFG)
    assert (window == 0).all()


def test_test_windows_cap_is_evenly_spaced():
    windows = test_windows(64 * 100, CFG)  # 100 windows, capped at 32
    assert len(windows) == 32
    starts = [int(w[0]) for w in windows]
    assert starts[0] == 0 and starts[-1] == 64 * 99 and starts == sorted(set(starts))
    assert max(np.diff(starts)) <= 2 * min(np.diff(starts))
    assert len(test_windows(64 * 100, CFG.replace(max_windows=None))) == 100


def _frames(t=8, h=60, w=90, value=None, seed=0):
    if value is not None:
        return np.full((t, h, w, 3), value, np.uint8)
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_transform_shapes_and_dtype():
    cfg = ClipConfig(num_frames=8, height=64, width=96)
    for frames in (_frames(), _frames(h=200, w=120), _frames(h=30, w=40)):  # down- and upsizing
        x = train_transform(frames, cfg, np.random.default_rng(0))
        y = test_transform(frames, cfg)
        assert x.shape == y.shape == (3, 8, 64, 96)
        assert x.dtype == y.dtype == torch.float32 and x.is_contiguous()
    with pytest.raises(ValueError, match="uint8"):
        test_transform(_frames().astype(np.float32), cfg)


def test_normalisation_round_trips():
    colour = np.zeros((4, 50, 70, 3), np.uint8)
    colour[...] = (200, 100, 30)
    x = test_transform(colour, CFG)
    assert torch.allclose(x.mean(dim=(1, 2, 3)), (torch.tensor([200, 100, 30]) / 255 - torch.tensor(CFG.mean)) / torch.tensor(CFG.std), atol=1e-4)
    back = denormalize(x, CFG)
    assert torch.allclose(back[:, 0, 0, 0], torch.tensor([200, 100, 30]) / 255, atol=1e-5)
    assert (clip_to_frames(x, CFG) == np.array([200, 100, 30], np.uint8)).all()
    batch = torch.rand(2, 3, 4, 5, 5)
    assert torch.allclose(denormalize(normalize(batch, CFG), CFG), batch, atol=1e-6)


def test_train_transform_flips_half_the_time_and_reports_it():
    frames = np.zeros((4, 40, 40, 3), np.uint8)
    frames[:, :, :20] = 255  # bright left half
    cfg = ClipConfig(num_frames=4, height=40, width=40, crop_scale=(1.0, 1.0))
    flips = []
    for seed in range(40):
        out = []
        x = denormalize(train_transform(frames, cfg, np.random.default_rng(seed), out), cfg)
        left, right = x[..., :20].mean(), x[..., 20:].mean()
        assert (left < right) == out[0]
        flips.append(out[0])
    assert 8 < sum(flips) < 32
    out = []
    train_transform(frames, cfg.replace(flip=False), np.random.default_rng(0), out)
    assert out == [False]


def _crop_aspects(cfg, seeds=40):
    """The width / height of each random train crop, read off frames that encode x and y as values."""
    y, x = np.mgrid[0:200, 0:200]
    frames = np.zeros((2, 200, 200, 3), np.uint8)
    frames[..., 0], frames[..., 1] = x * 255 // 199, y * 255 // 199
    aspects = []
    for seed in range(seeds):
        clip = denormalize(train_transform(frames, cfg, np.random.default_rng(seed)), cfg)  # (3, T, h, w)
        aspects.append(float(np.ptp(clip[0, 0].numpy()) / np.ptp(clip[1, 0].numpy())))
    return np.array(aspects)


def test_aspect_jitter_stretches_the_train_crop_within_its_range():
    cfg = ClipConfig(num_frames=2, height=32, width=32, crop_scale=(0.5, 0.5), flip=False)
    assert np.allclose(_crop_aspects(cfg), 1.0, atol=0.03)  # no jitter: the target's square
    aspects = _crop_aspects(cfg.replace(aspect_jitter=(0.5, 2.0)))
    assert aspects.min() >= 0.5 - 0.03 and aspects.max() <= 2.0 + 0.03
    assert (aspects < 0.8).sum() >= 5 and (aspects > 1.25).sum() >= 5  # both ways, not only one
    assert ClipConfig.from_dict(json.loads(json.dumps(cfg.replace(aspect_jitter=(0.75, 1.5)).to_dict()))).aspect_jitter == (0.75, 1.5)
    for bad in ((1.2, 1.5), (0.0, 1.0), (0.8, 0.9)):
        with pytest.raises(ValueError, match="aspect_jitter"):
            ClipConfig(aspect_jitter=bad)


def test_train_transform_is_reproducible_and_random():
    frames = _frames()
    a = train_transform(frames, CFG, np.random.default_rng(5))
    b = train_transform(frames, CFG, np.random.default_rng(5))
    c = train_transform(frames, CFG, np.random.default_rng(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_test_transform_is_the_centre_crop():
    frames = np.zeros((2, 100, 200, 3), np.uint8)
    frames[:, :, 50:150] = 255  # exactly the centre square
    x = denormalize(test_transform(frames, ClipConfig(num_frames=2, height=50, width=50)), CFG)
    assert x.min() > 0.99


def test_decode_max_side_never_upsamples_the_smallest_crop():
    assert decode_max_side(640, 480, CFG) == 299  # short side 224 = 112 / 0.5
    assert decode_max_side(640, 480, CFG, train=False) == 150
    assert decode_max_side(160, 120, CFG) is None  # already small: decode at full size
    wide = ClipConfig(height=64, width=128)
    side = decode_max_side(1920, 1080, wide, train=False)
    assert side is not None and side >= 128


def test_segment_sampling_by_hand_and_by_time():
    """One frame per equal segment; the same phase in every segment at test time, so two videos of
    one action at 20 fps (70 frames) and 15 fps (26 frames) are sampled at the same moments."""
    from core.data.clips import segment_indices

    assert segment_indices(8, 4, np.zeros(4)).tolist() == [0, 2, 4, 6]
    assert segment_indices(8, 4, np.full(4, 0.5)).tolist() == [1, 3, 5, 7]
    assert segment_indices(3, 6, np.zeros(6)).tolist() == [0, 0, 1, 1, 2, 2]  # short: repeated in order
    cfg = ClipConfig(num_frames=8, sampling="segments", max_windows=2)
    slow, fast = test_windows(70, cfg), test_windows(26, cfg)
    assert len(slow) == len(fast) == 2
    assert np.allclose(slow[0] / 70, fast[0] / 26, atol=1 / 26)  # same relative moments
    rng = np.random.default_rng(0)
    for n in (5, 26, 70, 143):
        idx = train_indices(n, cfg, rng)
        assert len(idx) == 8 and idx.min() >= 0 and idx.max() < n and np.all(np.diff(idx) >= 0)
        edges = np.arange(9) * n / 8
        assert np.all(idx >= np.floor(edges[:-1])) and np.all(idx < np.maximum(edges[1:], edges[:-1] + 1))
    with pytest.raises(ValueError, match="sampling"):
        ClipConfig(sampling="random")


def test_segment_pairs_take_each_segments_frame_and_the_next():
    """segment_pairs: num_frames / 2 segments, each pick followed by the next source frame (the
    last frame pairs with itself); the picks are the segments' own, by time as with segments."""
    from core.data.clips import segment_indices

    cfg = ClipConfig(num_frames=8, sampling="segment_pairs", max_windows=2)
    for window, phase in zip(test_windows(40, cfg), (0.25, 0.75)):
        picks = segment_indices(40, 4, np.full(4, phase))
        assert window.tolist() == np.stack([picks, picks + 1], 1).reshape(-1).tolist()
    assert test_windows(40, cfg)[0].tolist() == [2, 3, 12, 13, 22, 23, 32, 33]
    assert test_windows(3, cfg.replace(max_windows=1))[0].tolist() == [0, 1, 1, 2, 1, 2, 2, 2]  # short: in order
    rng = np.random.default_rng(0)
    for n in (5, 26, 70):
        for scaled in (cfg, cfg.replace(time_scale=(0.6, 0.9))):
            idx = train_indices(n, scaled, rng)
            assert len(idx) == 8 and idx.min() >= 0 and idx.max() < n
            assert np.all((idx[1::2] - idx[0::2] == 1) | (idx[1::2] == n - 1))  # pairs of neighbours
            assert np.all(np.diff(idx[0::2]) >= 0)  # segments in order
    with pytest.raises(ValueError, match="even"):
        ClipConfig(num_frames=7, sampling="segment_pairs")
    assert cfg.whole_video and cfg.segments == 4 and ClipConfig(sampling="segments").segments == 32


def test_segment_training_options_shared_phase_and_time_scale():
    """shared: evenly spaced frames (differences span equal times), a random offset; time_scale:
    the clip covers a random part of the video of that fraction, all of it inside the video."""
    from core.data.clips import segment_indices

    rng = np.random.default_rng(1)
    shared = ClipConfig(num_frames=8, sampling="segments", segment_phase="shared")
    offsets = set()
    for _ in range(20):
        idx = train_indices(80, shared, rng)
        assert np.all(np.diff(idx) == 10)  # 80 frames / 8 segments, the same phase in each
        offsets.add(int(idx[0]))
    assert len(offsets) > 3  # the phase is drawn, not fixed
    scaled = shared.replace(time_scale=(0.5, 0.5))
    starts = set()
    for _ in range(20):
        idx = train_indices(80, scaled, rng)
        assert np.all(np.diff(idx) == 5) and idx.min() >= 0 and idx.max() < 80  # 40 frames / 8 segments
        starts.add(int(idx[0]))
    assert len(starts) > 5
    short = train_indices(5, ClipConfig(num_frames=8, sampling="segments", time_scale=(0.2, 0.2)), rng)
    assert len(short) == 8 and short.min() >= 0 and short.max() < 5  # a span of one frame at least
    plain = ClipConfig(num_frames=8, sampling="segments")  # the defaults draw as before these options
    torch.testing.assert_close(torch.from_numpy(train_indices(70, plain, np.random.default_rng(3))),
                               torch.from_numpy(segment_indices(70, 8, np.random.default_rng(3).random(8))))
    for bad in (dict(segment_phase="random"), dict(time_scale=(0.0, 1.0)), dict(time_scale=(0.9, 0.8)),
                dict(motion_min_side=0.0), dict(motion_fraction=1.0)):
        with pytest.raises(ValueError):
            ClipConfig(**bad)
    assert ClipConfig.from_dict(scaled.to_dict()) == scaled


@pytest.mark.parametrize("motion_crop", [True, False])
def test_test_batch_is_the_torch_path_bit_for_bit(make_video, tmp_path, motion_crop):
    """The lookup-table normalisation gives exactly what torch's float ops give on the same crop."""
    from core.data.clips import _to_clip, test_batch, test_view
    from core.data.video import read_video

    frames, _ = read_video(make_video(tmp_path / "v.avi", 24, width=96, height=64))
    cfg = ClipConfig(num_frames=8, stride=1, height=40, width=48, motion_crop=motion_crop)
    rows = [np.arange(0, 8), np.arange(8, 16), np.arange(16, 24) % 20]
    expected = torch.stack([_to_clip(test_view(frames[r], cfg), cfg, flip=False) for r in rows])
    assert torch.equal(test_batch(frames, rows, cfg), expected)
    assert torch.equal(test_transform(frames[rows[1]], cfg), expected[1])
    with pytest.raises(ValueError, match="needs 8 frames"):
        test_batch(frames, [np.arange(5)], cfg)


def test_a_smaller_motion_box_is_decoded_at_a_higher_resolution():
    """A tighter motion crop (motion_min_side) must still have enough pixels for the clip size."""
    loose = ClipConfig(height=64, width=64, motion_crop=True)
    tight = loose.replace(motion_min_side=0.15, motion_fraction=0.6)
    side_loose, side_tight = decode_max_side(1920, 1080, loose, train=True), decode_max_side(1920, 1080, tight, train=True)
    assert side_tight is None or (side_loose is not None and side_tight > side_loose)
