"""Predictor on a tiny checkpoint (8 frames, stride 1, 64x64): the paper's test protocol, maps,
notes, errors, the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core import predict as pr
from core.attention_maps import write_video
from core.checkpoint import load_checkpoint
from core.data.clips import test_crop_box, test_transform, test_view, test_windows
from core.data.dataset import load_test_clips
from core.data.video import VideoError, probe_video
from conftest import needs_cpu_bf16

# stage shapes of the tiny model for an 8x64x64 clip: (T_i, H_i, W_i) of stages 2..5
STAGES = [(4, 16, 16), (2, 8, 8), (1, 4, 4), (1, 2, 2)]


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint):
    return pr.Predictor(tiny_checkpoint, device="cpu")


def test_probabilities_and_windows_follow_the_test_protocol(predictor, moving_square):
    result = predictor.predict(moving_square, topk=2)
    cfg = predictor.clip_cfg
    windows = test_windows(probe_video(moving_square).num_frames, cfg)
    assert len(windows) == 3 and result.window_probs.shape == (3, 3)
    assert np.allclose(result.window_probs.sum(1), 1, atol=1e-5)
    assert np.allclose(result.probs, result.window_probs.mean(0)) and abs(result.probs.sum() - 1) < 1e-5
    assert [name for name, _ in result.topk] == [predictor.class_names[i] for i in np.argsort(-result.probs)[:2]]
    assert result.window_times == [(0.0, 0.8), (0.8, 1.6), (1.6, 2.0)]
    assert [w.tolist() for w in result.window_indices] == [w.tolist() for w in windows]
    assert any("looped" in note for note in result.notes)  # the 4-frame tail loops
    assert result.frames.dtype == np.uint8 and result.frames.shape == (8, 60, 60, 3)  # centre square
    assert result.attention is None and result.diversity is None
    assert set(result.timings) >= {"decode", "model", "maps", "total"}


def test_matches_the_evaluation_pipeline_on_a_real_clip(predictor, shared_data):
    video = shared_data / "clips" / "mmaction2_tests_data_test.avi"
    result = predictor.predict(video, topk=10)
    clips, windows, _ = load_test_clips(video, predictor.clip_cfg)
    with torch.inference_mode():
        expected = predictor.model(clips).logits.softmax(-1).numpy()
    assert len(result.window_times) == len(windows) == 21
    assert np.allclose(result.window_probs, expected, atol=1e-5)
    assert len(result.topk) == 3  # topk is capped at the number of classes


def test_attention_maps_and_diversity(predictor, moving_square):
    result = predictor.predict(moving_square, with_attention=True, batch_windows=2)  # 2 batches: 2 + 1
    assert [s.stage for s in result.attention] == [2, 3, 4, 5]
    for maps, (t, h, w) in zip(result.attention, STAGES):
        assert maps.shape == (t, h, w)
        assert maps.spatial.shape == (3, h, w) and maps.temporal.shape == (3, t, t) and maps.received.shape == (3, t)
        assert np.allclose(maps.spatial.sum((1, 2)), 1, atol=1e-4)  # mean over queries of softmax rows
        assert np.allclose(maps.received.sum(1), 1, atol=1e-4)
    for kind in ("spatial", "temporal"):
        matrix = result.diversity[kind]
        assert matrix.shape == (4, 4) and np.allclose(np.diag(matrix), 1, atol=1e-4)
        assert np.allclose(matrix, matrix.T, atol=1e-5)
    plain = predictor.predict(moving_square)
    assert np.allclose(plain.window_probs, result.window_probs, atol=1e-5)  # maps do not change scores
    assert plain.attention_quality is None


def test_attention_quality_of_one_video(predictor, moving_square):
    """Concentration and lift per stage for this video, in range, and in the JSON; a map that sits
    on one cell is called one-hot in plain words."""
    result = predictor.predict(moving_square, with_attention=True)
    spatial = result.attention_quality["spatial"]
    assert list(spatial) == ["stage 2", "stage 3", "stage 4", "stage 5"]
    for (t, h, w), row in zip(STAGES, spatial.values()):
        assert row["cells"] == h * w and 1 / (h * w) - 1e-9 <= row["concentration"] <= 1 + 1e-9
        assert row["input_dependence"] is None  # needs several videos
        assert row["motion_lift"] is None or 0 <= row["motion_lift"] <= h * w
    assert "attention_quality" in result.to_dict()
    one_hot = {"spatial": {"stage 3": {"cells": 16, "concentration": 1 / 16, "degenerate": "one-hot"}}}
    from core.attention_quality import describe

    assert describe(one_hot) == ["Spatial attention at stage 3 is one-hot on this video "
                                 "(all of it on one cell: a peak, not a region)."]


def test_test_view_is_what_test_transform_sees(predictor):
    frames = np.full((8, 120, 200, 3), 60, np.uint8)
    for i in range(8):  # something moving in the left part of a still scene
        frames[i, 40:60, 20 + 4 * i : 40 + 4 * i] = 250
    sizes = []
    for cfg in (predictor.clip_cfg, predictor.clip_cfg.replace(motion_crop=True)):
        view = test_view(frames, cfg)
        y0, x0, y1, x1 = test_crop_box(frames, cfg)
        assert view.shape[1:3] == (y1 - y0, x1 - x0) and np.shares_memory(view, frames)
        sizes.append(view.shape[1:3])
        again = test_transform(np.ascontiguousarray(view), cfg.replace(motion_crop=False))
        assert torch.allclose(again, test_transform(frames, cfg), atol=1e-5)
    assert sizes[0] == (120, 120) and sizes[1][0] < 120  # centre square; motion box is tighter


def test_prediction_says_where_the_model_looked_on_the_whole_frame(predictor, tmp_path):
    frames = np.full((16, 96, 160, 3), 50, np.uint8)
    for i in range(16):  # a square moving on the right of a still scene
        frames[i, 30:50, 100 + 2 * i : 120 + 2 * i] = 240
    video = write_video(frames, tmp_path / "right.mp4", fps=10)
    cfg = predictor.clip_cfg
    predictor.clip_cfg = cfg.replace(motion_crop=True)
    try:
        result = predictor.predict(video)
    finally:
        predictor.clip_cfg = cfg
    y0, x0, y1, x1 = result.view_box
    assert result.context_frame.shape[:2] == (96, 160) and result.frames.shape[1:3] == (y1 - y0, x1 - x0)
    assert x0 > 40 and x1 <= 160  # the box is around the moving square, on the right
    window = result.context_frame[y0:y1, x0:x1]
    assert np.array_equal(window, result.frames[len(result.frames) // 2])  # the crop is cut from that frame
    assert result.to_dict()["view_box"] == [y0, x0, y1, x1]


def test_short_video_cap_and_frames_in_memory(predictor, tmp_path):
    short = write_video(np.full((5, 64, 64, 3), 90, np.uint8), tmp_path / "short.mp4", fps=10)
    result = predictor.predict(short)
    assert result.window_probs.shape[0] == 1
    assert any("shorter than one window" in n and "looped" in n for n in result.notes)
    long = write_video(np.full((40, 64, 64, 3), 90, np.uint8), tmp_path / "long.mp4", fps=10)
    capped = predictor.predict(long, max_seconds=1.6)
    assert capped.num_frames_used == 16 and len(capped.window_times) == 2
    assert any("first 1.6 s" in n for n in capped.notes)
    in_memory = predictor.predict_frames(np.full((16, 64, 64, 3), 90, np.uint8), fps=10)
    assert np.allclose(in_memory.window_probs, capped.window_probs, atol=1e-4)


def test_bad_input_is_a_clear_error(predictor, tmp_path):
    with pytest.raises(VideoError, match="not found"):
        predictor.predict(tmp_path / "missing.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(VideoError):
        predictor.predict(text)
    with pytest.raises(ValueError, match="topk"):
        predictor.predict(text, topk=0)
    with pytest.raises(ValueError, match="precision"):
        pr.Predictor(load_checkpoint(predictor.checkpoint.path), precision="fp16")


@needs_cpu_bf16
def test_bf16_on_cpu(tiny_checkpoint, moving_square):
    predictor = pr.Predictor(load_checkpoint(tiny_checkpoint), device="cpu", precision="bf16")
    assert predictor.precision == "bf16"
    result = predictor.predict(moving_square, with_attention=True)
    reference = pr.Predictor(load_checkpoint(tiny_checkpoint), device="cpu").predict(moving_square)
    assert abs(result.probs.sum() - 1) < 1e-4 and result.attention[0].spatial.dtype == np.float32
    assert np.abs(result.probs - reference.probs).max() < 0.05
    assert not any("bf16" in n for n in result.notes)


def test_bf16_asked_where_there_is_none_runs_fp32_and_says_why(tiny_checkpoint, moving_square, monkeypatch):
    """The path of a CPU without bf16, on any machine: STMANET_NO_BF16 makes core.capability say no."""
    monkeypatch.setenv("STMANET_NO_BF16", "1")
    predictor = pr.Predictor(load_checkpoint(tiny_checkpoint), device="cpu", precision="bf16")
    assert predictor.precision == "fp32"
    result = predictor.predict(moving_square)
    assert any("bf16 not used (bf16 turned off by STMANET_NO_BF16): ran in fp32" == n for n in result.notes)


def test_an_operator_the_device_lacks_moves_the_predictor_to_the_cpu_with_a_note(tiny_checkpoint, moving_square,
                                                                               monkeypatch):
    """What happens on Apple MPS when an operator is missing, without the hardware: the fallback
    helper is told the device failed; every later result still says where it ran."""
    import core.capability as capability

    def lacking(run, device, on_fallback=None):  # the predictor's device, seen as an MPS without aten::foo
        def on_mps(dev):
            if dev.type == "mps":
                raise NotImplementedError("The operator 'aten::foo' is not currently implemented for the MPS device.")
            return run(dev)
        return capability.with_cpu_fallback(on_mps, torch.device("mps"), on_fallback)

    predictor = pr.Predictor(load_checkpoint(tiny_checkpoint), device="cpu")
    monkeypatch.setattr(pr, "with_cpu_fallback", lacking)
    first = predictor.predict(moving_square)
    monkeypatch.undo()
    second = predictor.predict(moving_square)
    for result in (first, second):
        assert any(n.startswith("mps lacks an operator this model needs") for n in result.notes), result.notes
    assert predictor.device == torch.device("cpu") and abs(first.probs.sum() - 1) < 1e-4


def test_cli_json_and_errors(tiny_checkpoint, moving_square, capsys):
    assert pr.main([str(moving_square), "--checkpoint", str(tiny_checkpoint), "--topk", "2", "--json", "--attention"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["topk"]) == 2 and abs(sum(out["probs"].values()) - 1) < 1e-4
    assert len(out["window_times"]) == 3 and len(out["attention"]) == 4
    assert np.array(out["diversity"]["spatial"]).shape == (4, 4)
    assert set(out["attention_quality"]["spatial"]) == {"stage 2", "stage 3", "stage 4", "stage 5"}
    assert pr.main([str(moving_square), "--checkpoint", str(tiny_checkpoint), "--attention"]) == 0
    assert "stage 3 spatial attention:" in capsys.readouterr().out
    assert pr.main([str(moving_square), "--checkpoint", str(tiny_checkpoint)]) == 0
    text = capsys.readouterr().out
    assert "3 window(s)" in text and all(name in text for name in ("wave", "clap", "jump"))
    assert pr.main([str(moving_square) + ".nope", "--checkpoint", str(tiny_checkpoint)]) == 2
    assert "video not found" in capsys.readouterr().err
