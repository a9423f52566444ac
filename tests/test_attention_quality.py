"""Attention-quality statistics against hand-made maps with known values."""
import math

import numpy as np
import pytest
import torch

from core.attention_quality import (
    AttentionQuality,
    concentration,
    degeneracy,
    describe,
    input_dependence,
    motion_cells,
    motion_lift,
    received,
)
from core.data.clips import ClipConfig, normalize


def test_received_is_the_column_mean():
    attn = torch.tensor([[[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.2, 0.2, 0.6]]])
    assert torch.allclose(received(attn), torch.tensor([[0.7 / 3, 1.7 / 3, 0.6 / 3]]))


def test_constant_map_has_zero_input_dependence():
    maps = torch.tensor([0.1, 0.2, 0.7]).repeat(5, 1)
    assert input_dependence(maps) == pytest.approx(0.0, abs=1e-12)


def test_input_dependence_of_disjoint_maps_is_one_and_mixed_pairs_average():
    one_hots = torch.eye(4)
    assert input_dependence(one_hots) == pytest.approx(1.0)
    # pairs: (a, a) 0, (a, b) 1, (a, b) 1 -> mean 2/3
    maps = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert input_dependence(maps) == pytest.approx(2 / 3)
    assert math.isnan(input_dependence(maps[:1]))


def test_concentration_one_hot_is_one_over_cells_and_uniform_is_one():
    cells = 16
    one_hot = torch.zeros(1, cells)
    one_hot[0, 3] = 1
    assert float(concentration(one_hot)) == pytest.approx(1 / cells)
    assert float(concentration(torch.full((1, cells), 1 / cells))) == pytest.approx(1.0)
    half = torch.zeros(1, cells)
    half[0, :4] = 0.25  # four cells evenly: exp(ln 4) / 16
    assert float(concentration(half)) == pytest.approx(4 / cells)


def test_lift_is_one_over_area_share_when_attention_sits_only_on_moving_cells():
    motion = torch.zeros(1, 16)
    motion[0, [5, 6]] = 1.0  # 2 of 16 cells move: area share 1/8
    attention = torch.zeros(1, 16)
    attention[0, [5, 6]] = 0.5
    assert float(motion_lift(attention, motion)) == pytest.approx(8.0)
    assert float(motion_lift(torch.full((1, 16), 1 / 16), motion)) == pytest.approx(1.0)  # no preference
    assert math.isnan(float(motion_lift(attention, torch.zeros(1, 16))))  # nothing moves: undefined


def test_degeneracy_names_fixed_and_one_hot_maps():
    assert degeneracy(0.0, 1 / 64, 64) == "fixed and one-hot"
    assert degeneracy(0.5, 1 / 64, 64) == "one-hot"
    assert degeneracy(0.01, 0.5, 64) == "fixed"
    assert degeneracy(0.4, 0.5, 64) is None


def _moving_square_clip(top: int, left: int, cfg: ClipConfig, size: int = 32) -> torch.Tensor:
    """A (3, T, size, size) clip: grey background, an 8x8 square blinking at (top, left)."""
    frames = np.full((cfg.num_frames, size, size, 3), 100, np.uint8)
    frames[::2, top : top + 8, left : left + 8] = 250
    x = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 255
    return normalize(x, cfg)


def test_motion_cells_find_the_moving_square():
    cfg = ClipConfig(num_frames=8, stride=1, height=32, width=32)
    clip = _moving_square_clip(0, 24, cfg)
    cells = motion_cells(clip[None], cfg, (4, 4))  # 8x8 px cells: the square is cell (0, 3)
    assert cells.shape == (1, 16)
    assert int(cells[0].argmax()) == 3
    assert float(cells[0, 3]) > 0.5 and float(cells[0].sum() - cells[0, 3]) < 1.0


def test_accumulator_on_input_following_and_fixed_attention():
    """Attention that follows the moving square: dependence > 0, one-hot, lift = 1 / area share;
    a fixed map on a corner: dependence 0, called degenerate."""
    cfg = ClipConfig(num_frames=8, stride=1, height=32, width=32)
    following, fixed = AttentionQuality(cfg), AttentionQuality(cfg)
    for top, left in ((0, 24), (24, 0), (8, 8)):
        clip = _moving_square_clip(top, left, cfg)[None]
        cell = (top // 8) * 4 + left // 8
        a_follow = torch.zeros(1, 16, 16)
        a_follow[:, :, cell] = 1.0
        a_fixed = torch.zeros(1, 16, 16)
        a_fixed[:, :, 0] = 1.0
        temporal = torch.full((1, 4, 4), 0.25)
        following.add_video(clip, [a_follow], [temporal], [(4, 4, 4)])
        fixed.add_video(clip, [a_fixed], [None], [(4, 4, 4)])
    good = following.report()["spatial"]["stage 2"]
    assert good["input_dependence"] == pytest.approx(1.0)
    assert good["concentration"] == pytest.approx(1 / 16)
    assert good["motion_lift"] > 8  # the square is at most 1-2 cells of 16
    assert following.report()["temporal"]["stage 2"]["concentration"] == pytest.approx(1.0)
    bad = fixed.report()["spatial"]["stage 2"]
    assert bad["input_dependence"] == pytest.approx(0.0, abs=1e-9)
    assert bad["degenerate"] == "fixed and one-hot"
    assert describe(fixed.report()) and "stage 2" in describe(fixed.report())[0]
