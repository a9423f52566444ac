"""Motion region of interest: finds what moves, degrades to the whole frame when nothing does."""
import numpy as np

from core.data.roi import crop_box, motion_box


def _video_with_moving_square(t=24, h=240, w=320, y=150, x=40, size=20):
    rng = np.random.default_rng(0)
    frames = np.full((t, h, w, 3), 90, np.uint8) + rng.integers(0, 3, (t, h, w, 3), dtype=np.uint8)  # sensor noise
    for k in range(t):
        dx = int(15 * np.sin(k / 3))  # a small person waving: moves within x-15..x+15+size
        frames[k, y : y + size, x + 15 + dx : x + 15 + dx + size] = 250
    return frames


def test_box_is_square_and_contains_the_motion():
    frames = _video_with_moving_square()
    y0, x0, y1, x1 = motion_box(frames)
    assert y1 - y0 == x1 - x0  # square in pixels
    assert y0 <= 150 and y1 >= 170 and x0 <= 40 and x1 >= 90  # covers the square's whole path
    assert (y1 - y0) < 0.6 * 240  # and is much smaller than the frame
    assert 0 <= y0 and 0 <= x0 and y1 <= 240 and x1 <= 320


def test_min_side_bounds_a_tiny_mover():
    frames = _video_with_moving_square(size=4)
    y0, x0, y1, x1 = motion_box(frames, min_side=0.35)
    assert y1 - y0 >= int(0.35 * 240)


def test_static_video_and_single_frame_keep_the_whole_frame():
    still = np.full((10, 60, 80, 3), 128, np.uint8)
    assert motion_box(still) == (0, 0, 60, 80)
    assert motion_box(still[:1]) == (0, 0, 60, 80)


def test_crop_box_cuts_every_frame():
    frames = _video_with_moving_square()
    box = motion_box(frames)
    crop = crop_box(frames, box)
    assert crop.shape == (24, box[2] - box[0], box[3] - box[1], 3)
    assert crop.max() == 250  # the mover is inside


def test_a_higher_fraction_keeps_only_what_moves_most():
    """A body swaying a little and a hand waving a lot: the default box holds both, a high
    fraction only the hand (the gesture set's hands at 4-6 m are a few pixels of the body's box)."""
    rng = np.random.default_rng(1)
    frames = np.full((24, 240, 320, 3), 90, np.uint8) + rng.integers(0, 3, (24, 240, 320, 3), dtype=np.uint8)
    for k in range(24):
        sway = round(4 * np.sin(k / 4))
        frames[k, 40:200, 60 + sway : 120 + sway] = 170  # the body: large, sways 4 px, dim contrast
        dx = int(20 * np.sin(k / 2))
        frames[k, 60:72, 230 + dx : 242 + dx] = 250  # the hand: small, moves 20 px, bright
    y0, x0, y1, x1 = motion_box(frames, min_side=0.1)
    assert x0 <= 60 and x1 >= 250  # body and hand
    y0, x0, y1, x1 = motion_box(frames, min_side=0.1, fraction=0.7)
    assert x0 >= 150 and x1 >= 250 and y1 - y0 < 100  # the hand's path only
