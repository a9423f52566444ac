"""The model: shapes, attention, losses against hand computation, gradients, FLOPs, learning."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from core.model import STMANetConfig, build_model, config_by_name, stmanet_loss, variant_names
from core.model.inputs import ClipInput
from core.model.losses import (
    align_spatial,
    align_temporal,
    diversity,
    received_spatial,
    received_temporal,
    spatial_diversity,
    temporal_diversity,
)

TINY = dict(num_classes=5, base_width=4, dropout=0.0)


def tiny(name: str, **kw) -> STMANetConfig:
    return config_by_name(name, **{**TINY, **kw})


@pytest.mark.parametrize("name", variant_names(10))
@pytest.mark.parametrize("clip_shape", [(16, 96, 96), (17, 112, 112), (33, 80, 96), (1, 64, 64)])
def test_every_variant_and_odd_clip_sizes(name, clip_shape):
    torch.manual_seed(0)
    model = build_model(tiny(name)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *clip_shape), return_attention=True)
    assert out.logits.shape == (2, 5)
    assert len(out.stage_logits) == 4 and all(s.shape == (2, 5) for s in out.stage_logits)
    assert len(out.stage_shapes) == 4
    cfg = model.cfg
    expected_dim = sum(cfg.stage_channels) if cfg.multi_level_fusion else cfg.stage_channels[-1]
    assert out.features.shape == (2, expected_dim)
    for (t, h, w), a_s, a_t in zip(out.stage_shapes, out.spatial_attention, out.temporal_attention):
        assert (a_s is not None) == cfg.use_sda and (a_t is not None) == cfg.use_tda
        if a_s is not None:
            assert a_s.shape == (2, h * w, h * w)
        if a_t is not None:
            assert a_t.shape == (2, t, t)
    assert torch.isfinite(out.logits).all()


def test_stage_shapes_follow_the_design_for_a_paper_clip():
    model = build_model(config_by_name("stmanet_r18", num_classes=7, base_width=8)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 112, 112))
    assert out.stage_shapes == [(16, 28, 28), (8, 14, 14), (4, 7, 7), (2, 4, 4)]


def test_last_spatial_stride_one_keeps_stage_4s_grid_in_stage_5():
    cfg = config_by_name("stmanet_r18", num_classes=7, base_width=8, last_spatial_stride=1)
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 112, 112), return_attention=True)
    assert out.stage_shapes == [(16, 28, 28), (8, 14, 14), (4, 7, 7), (2, 7, 7)]
    assert out.spatial_attention[3].shape == (1, 49, 49)
    with pytest.raises(ValueError, match="last_spatial_stride"):
        config_by_name("stmanet_r18", last_spatial_stride=3)


@pytest.mark.parametrize("strides,times", [((2, 2, 2, 2), (8, 4, 2, 1)), ((2, 1, 1, 1), (8, 8, 8, 8)),
                                           ((1, 1, 1, 1), (16, 16, 16, 16)), ((2, 2, 1, 1), (8, 4, 4, 4))])
def test_temporal_strides_set_each_stages_time_steps(strides, times):
    cfg = config_by_name("stmanet_r18", num_classes=7, base_width=8, temporal_strides=strides, lambda_temporal=0.001)
    model = build_model(cfg)
    out = model(torch.randn(2, 3, 16, 64, 64))  # training mode: the diversity losses see every map
    assert [t for t, _, _ in out.stage_shapes] == list(times)
    assert [tuple(a.shape) for a in out.temporal_attention] == [(2, t, t) for t in times]
    assert [hw for _, *hw in out.stage_shapes] == [[16, 16], [8, 8], [4, 4], [2, 2]]  # space as before
    out.logits.sum().backward()
    assert model.stem.conv[0].weight.grad.abs().sum() > 0


def test_temporal_strides_validate_and_survive_json():
    cfg = config_by_name("stmanet_r18", temporal_strides=[2, 1, 1, 1])  # a list, as JSON gives it back
    assert cfg.temporal_strides == (2, 1, 1, 1)
    assert type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for bad in ((2, 2, 2), (2, 3, 1, 1), (0, 1, 1, 1)):
        with pytest.raises(ValueError, match="temporal_strides"):
            config_by_name("stmanet_r18", temporal_strides=bad)


def test_stmanet50_forward_once():
    torch.manual_seed(0)
    model = build_model(config_by_name("stmanet_r50", num_classes=101)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 16, 64, 64), return_attention=True)
    assert out.logits.shape == (1, 101)
    assert out.features.shape == (1, 256 + 512 + 1024 + 2048)
    assert [a.shape[-1] for a in out.spatial_attention] == [h * w for _, h, w in out.stage_shapes]


def test_attention_rows_sum_to_one():
    torch.manual_seed(0)
    model = build_model(tiny("stmanet_r10")).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 16, 64, 64), return_attention=True)
    for a in out.spatial_attention + out.temporal_attention:
        assert (a >= 0).all()
        torch.testing.assert_close(a.sum(-1), torch.ones(a.shape[:-1]), atol=1e-5, rtol=0)


def test_fused_attention_matches_explicit_maps():
    """The SDPA path (no maps) and the explicit path (maps returned) compute the same function."""
    torch.manual_seed(0)
    model = build_model(tiny("stmanet_r10", residual_gamma_init=1.0)).eval()
    clip = torch.randn(2, 3, 16, 64, 64)
    with torch.no_grad():
        fast = model(clip).logits
        explicit = model(clip, return_attention=True).logits
    torch.testing.assert_close(fast, explicit, atol=1e-4, rtol=1e-4)


def test_residual_modules_start_as_the_plain_backbone():
    """With gamma = 0 the attention modules add nothing at init (design: start near identity)."""
    torch.manual_seed(0)
    full = build_model(tiny("stmanet_r10", multi_level_fusion=False)).eval()
    plain = build_model(tiny("r3d10_baseline")).eval()
    plain.load_state_dict({k: v for k, v in full.state_dict().items() if k in plain.state_dict()})
    clip = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(full(clip).logits, plain(clip).logits)


def test_align_spatial_by_hand():
    # 2x2 grid -> 1x1: every entry averages to the mean of the matrix.
    a = torch.tensor([[[0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 0.0, 1.0]]])
    assert torch.allclose(align_spatial(a, (2, 2), (1, 1)), torch.tensor([[[0.25]]]))
    # 2x2 -> 2x1 (pool along W): queries {0,1} and {2,3} merge, keys likewise.
    got = align_spatial(a, (2, 2), (2, 1))
    want = torch.tensor([[[(0.5 + 0.5 + 1.0 + 0.0) / 4, 0.0], [(0.25 + 0.25) / 4, (0.25 + 0.25 + 1.0) / 4]]])
    torch.testing.assert_close(got, want)


def test_align_temporal_by_hand():
    a = torch.arange(16.0).reshape(1, 4, 4)
    want = torch.tensor([[[(0 + 1 + 4 + 5) / 4, (2 + 3 + 6 + 7) / 4], [(8 + 9 + 12 + 13) / 4, (10 + 11 + 14 + 15) / 4]]])
    torch.testing.assert_close(align_temporal(a, 2), want)


def test_diversity_loss_by_hand():
    # Three stages, batch of 2, maps of 2 entries.
    m1 = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    m2 = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    m3 = torch.tensor([[1.0, 1.0], [2.0, 0.0]])
    cos = lambda u, v: float(u @ v / (u.norm() * v.norm()))  # noqa: E731
    pair = lambda x, y: (cos(x[0], y[0]) + cos(x[1], y[1])) / 2  # noqa: E731
    want = 2 * (pair(m1, m2) + pair(m1, m3) + pair(m2, m3))  # ordered pairs: each counted twice
    assert math.isclose(float(diversity([m1.unsqueeze(-1), m2.unsqueeze(-1), m3.unsqueeze(-1)])), want, rel_tol=1e-6)
    identical = diversity([m1, m1, m1, m1])
    assert math.isclose(float(identical), 12.0, rel_tol=1e-6)  # 4*3 ordered pairs of cos = 1


def test_diversity_margin_by_hand():
    m1 = torch.tensor([[1.0, 0.0]])
    m2 = torch.tensor([[1.0, 1.0]])  # cos(m1, m2) = 0.7071
    assert math.isclose(float(diversity([m1, m2], margin=0.5)), 2 * (math.sqrt(0.5) - 0.5), rel_tol=1e-5)
    assert float(diversity([m1, m2], margin=0.75)) == 0.0  # below the margin: left alone


def test_received_maps_by_hand():
    # 2x2 grid: the attention each cell receives is the column mean of the (queries x keys) map.
    a = torch.tensor([[[1.0, 0, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 1, 0], [0.5, 0, 0, 0.5]]])
    r = torch.tensor([2.0, 0.5, 1.0, 0.5]) / 4
    torch.testing.assert_close(received_spatial(a, (2, 2), (2, 2)), r[None])
    torch.testing.assert_close(received_spatial(a, (2, 2), (1, 1)), r.mean().view(1, 1))  # pooled
    up = received_spatial(a, (2, 2), (4, 4)).view(4, 4)  # repeated over the finer cells
    torch.testing.assert_close(up[:2, :2], torch.full((2, 2), float(r[0])))
    torch.testing.assert_close(up[2:, 2:], torch.full((2, 2), float(r[3])))
    t = torch.tensor([[[0.0, 1.0], [0.5, 0.5]]])
    torch.testing.assert_close(received_temporal(t, 2), torch.tensor([[0.25, 0.75]]))
    torch.testing.assert_close(received_temporal(t, 4), torch.tensor([[0.25, 0.25, 0.75, 0.75]]))


def test_received_form_does_not_reward_one_hot_maps_on_the_same_cell_alone():
    """The paper's form is minimised by one-hot rows on different keys per query even when every
    stage's received attention is the same; the received form sees that they all look alike."""
    shapes = [(1, 2, 2)] * 2
    stage_a = torch.eye(4)[None]  # each query attends to itself: received = uniform
    stage_b = torch.eye(4)[[1, 0, 3, 2]][None]  # another permutation: received = uniform too
    paper = spatial_diversity([stage_a, stage_b], shapes)
    received = spatial_diversity([stage_a, stage_b], shapes, form="received")
    assert float(paper) == 0.0 and math.isclose(float(received), 2.0, rel_tol=1e-6)
    first = temporal_diversity([torch.eye(2)[None], torch.full((1, 1, 1), 1.0)], [(2, 1, 1), (1, 1, 1)],
                               form="received", grid="first")
    assert math.isclose(float(first), 2.0, rel_tol=1e-6)  # uniform over 2 steps vs a repeated single step


def test_grey_difference_input_by_hand():
    clip = torch.zeros(1, 3, 3, 2, 2)
    clip[:, :, 1] = 1.0  # frame 1 brighter by 1 in every channel
    clip[:, 0, 2] = 2.0  # frame 2: red 2, green/blue 0
    out = ClipInput("grey_diff")(clip)
    assert out.shape == (1, 1, 3, 2, 2)
    d1 = 1.0  # luma weights sum to 1
    d2 = 0.299 * 2 - 1.0
    torch.testing.assert_close(out[0, 0, :, 0, 0], torch.tensor([d1, d1, d2]))  # D_0 = D_1
    model = build_model(tiny("stmanet_r10", input_mode="grey_diff"))
    assert model.stem.conv[0].in_channels == 1
    assert model(torch.randn(2, 3, 8, 64, 64)).logits.shape == (2, 5)
    first = ClipInput("grey_diff_first")(clip)  # [D_t ; g_t - g_0]
    assert first.shape == (1, 2, 3, 2, 2)
    torch.testing.assert_close(first[0, 0], out[0, 0])
    torch.testing.assert_close(first[0, 1, :, 0, 0], torch.tensor([0.0, 1.0, 0.299 * 2]))
    assert build_model(tiny("stmanet_r10", input_mode="grey_diff_first")).stem.conv[0].in_channels == 2
    # clip_norm: D over the clip is [1, 1, 0.299*2-1] at every pixel, so its RMS is known by hand
    rms = math.sqrt((1 + 1 + (0.299 * 2 - 1) ** 2) / 3)
    torch.testing.assert_close(ClipInput("grey_diff", clip_norm=True)(clip), out / rms)
    still = torch.full((1, 3, 4, 2, 2), 0.5) + 1e-3 * torch.randn(1, 3, 4, 2, 2)  # sensor noise only
    assert ClipInput("grey_diff", clip_norm=True)(still).abs().max() < 0.5  # the floor: noise stays small
    pairs = ClipInput("grey_pair_diff")(clip[:, :, [0, 1, 1, 2]])  # pairs (0, 1) and (1, 2): P = g_1 - g_0, g_2 - g_1
    assert pairs.shape == (1, 1, 2, 2, 2)
    torch.testing.assert_close(pairs[0, 0, :, 0, 0], torch.tensor([d1, d2]))
    paired = build_model(tiny("stmanet_r10", input_mode="grey_pair_diff"))
    assert paired.stem.conv[0].in_channels == 1
    assert paired(torch.randn(2, 3, 16, 64, 64)).stage_shapes[0][0] == 4  # 8 steps into the stem, halved by its pool
    with pytest.raises(ValueError, match="even number"):
        ClipInput("grey_pair_diff")(clip)
    with pytest.raises(ValueError, match="input_mode"):
        STMANetConfig(input_mode="flow")
    with pytest.raises(ValueError, match="received"):
        STMANetConfig(diversity_grid="first")


def test_diversity_weight_scales_both_lambdas():
    torch.manual_seed(0)
    cfg = tiny("stmanet_r10", diversity_form="received", diversity_grid="first")
    out = build_model(cfg).train()(torch.randn(2, 3, 16, 64, 64))
    target = torch.tensor([0, 1])
    full, none = stmanet_loss(out, target, cfg), stmanet_loss(out, target, cfg, diversity_weight=0.0)
    torch.testing.assert_close(full.total - none.total, 0.01 * full.spatial + 0.001 * full.temporal)


def test_total_loss_is_eq9():
    torch.manual_seed(0)
    cfg = tiny("stmanet_r10")
    model = build_model(cfg).train()
    target = torch.tensor([1, 3])
    out = model(torch.randn(2, 3, 16, 64, 64))
    terms = stmanet_loss(out, target, cfg)
    assert float(terms.spatial.detach()) > 0 and float(terms.temporal.detach()) > 0
    ce = F.cross_entropy(out.logits, target)
    heads = sum(F.cross_entropy(s, target) for s in out.stage_logits)
    want = ce + 0.01 * terms.spatial + 0.001 * terms.temporal + heads
    torch.testing.assert_close(terms.total, want)
    plain_cfg = tiny("r3d10_baseline")
    plain_terms = stmanet_loss(build_model(plain_cfg)(torch.randn(2, 3, 8, 64, 64)), target, plain_cfg)
    assert float(plain_terms.spatial) == 0 and float(plain_terms.temporal) == 0
    # stage 5 left out of theta: the sum over the pairs of stages 2-4 only, on stage 4's grid
    first3 = stmanet_loss(out, target, cfg.replace(diversity_last_stage=4))
    want_s = spatial_diversity([a.float() for a in out.spatial_attention[:3]], out.stage_shapes[:3])
    torch.testing.assert_close(first3.spatial, want_s)
    assert not torch.allclose(first3.spatial, terms.spatial)
    with pytest.raises(ValueError, match="diversity_last_stage"):
        cfg.replace(diversity_last_stage=2)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    cfg = tiny("stmanet_r10")
    model = build_model(cfg).train()
    # Zero-gamma residuals block gradient to their inputs at init by design; open them to test the graph.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.weight.uniform_(0.5, 1.5)
    # 32 frames so stage 5 keeps T=2: with T=1 a softmax over one frame is constant and has no gradient.
    terms = stmanet_loss(model(torch.randn(2, 3, 32, 64, 64)), torch.tensor([0, 4]), cfg)
    terms.total.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_stage_heads_do_not_change_the_main_model():
    torch.manual_seed(0)
    cfg = tiny("stmanet_r10")
    model = build_model(cfg).train()
    out = model(torch.randn(2, 3, 8, 64, 64))
    sum(F.cross_entropy(s, torch.tensor([0, 1])) for s in out.stage_logits).backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads and all(n.startswith("stage_heads.") for n in grads)


def _gflops(name: str) -> float:
    with torch.device("meta"):
        model = build_model(config_by_name(name)).eval()
        clip = torch.empty(1, 3, 32, 112, 112)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(clip)
    return counter.get_total_flops() / 1e9


def test_flop_ratio_bound_for_stmanet50():
    baseline, full = _gflops("r3d50_baseline"), _gflops("stmanet_r50")
    assert baseline == pytest.approx(40.3, abs=0.1)  # the design's figure for the plain 3D ResNet-50
    assert full / baseline <= 1.24
    assert full / baseline > 1.05  # the modules are really there


def test_names_and_config_round_trip():
    assert config_by_name("r3d50_baseline").use_tda is False
    cfg = config_by_name("stmanet_r50_tda", num_classes=15)
    assert (cfg.use_tda, cfg.use_sda, cfg.multi_level_fusion, cfg.num_classes) == (True, False, False, 15)
    assert STMANetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown model name"):
        config_by_name("resnet_whatever")
    with pytest.raises(ValueError, match="unknown model config fields"):
        STMANetConfig.from_dict({"bogus": 1})


def test_a_few_sgd_steps_lower_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    cfg = tiny("stmanet_r10", dropout=0.0)
    model = build_model(cfg).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    clips, target = torch.randn(4, 3, 8, 48, 48), torch.tensor([0, 1, 2, 3])
    losses = []
    for _ in range(8):
        terms = stmanet_loss(model(clips), target, cfg)
        opt.zero_grad()
        terms.total.backward()
        opt.step()
        losses.append(float(terms.ce.detach()))
    assert losses[-1] < 0.5 * losses[0]
