"""tools/ship_default.py: the shipped card reports the cross-validation of both models and the
attention quality beside the replaced model's, and config.json keeps what the app warns from."""
from __future__ import annotations

import json
import sys

from conftest import ROOT
from core import crossval
from core.checkpoint import load_checkpoint

sys.path.insert(0, str(ROOT / "tools"))
import ship_default  # noqa: E402


def _results(model: str, top1: list[float], dependence: float) -> list[dict]:
    quality = {"spatial": {"stage 2": {"input_dependence": dependence, "concentration": 0.3, "motion_lift": 4.0,
                                       "cells": 256}}}
    return [{"model": model, "fold": k, "top1": t, "top5": 1.0, "mean_class_accuracy": t,
             "val_top1_by_epoch": {"10": t}, "train_seconds": 1.0, "attention_quality": quality if dependence else {}}
            for k, t in enumerate(top1)]


def test_card_and_config_from_cross_validation(tiny_checkpoint, tmp_path):
    table = crossval.summarise(_results("stmanet_r18", [0.8, 0.7, 0.9, 0.8], 0.6)
                               + _results("r3d18_baseline", [0.7, 0.6, 0.8, 0.7], 0.0),
                               ["stmanet_r18", "r3d18_baseline"])
    cv = tmp_path / "cv.json"
    cv.write_text(json.dumps({"table": table, "failures": [], "folds": {k: list(crossval.FOLDS[k]) for k in range(4)}}))
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"attention_quality": {"spatial": {"stage 2": {
        "input_dependence": 0.1, "concentration": 0.004, "motion_lift": 0.01, "degenerate": "one-hot"}}}}))
    out = tmp_path / "out"
    assert ship_default.main(["--checkpoint", str(tiny_checkpoint), "--baseline-checkpoint", str(tiny_checkpoint),
                              "--crossval", str(cv), "--old-eval", str(old), "--out", str(out),
                              "--name", "stmanet-tiny"]) == 0
    card = (out / "stmanet-tiny" / "README.md").read_text()
    assert "80.0 +- 8.2" in card and "70.0 +- 8.2" in card  # both models, mean +- sample std
    assert "+10.0 points" in card
    assert "| spatial | stage 2 | 0.60 / 0.10 | 0.30 / 0.00 | 4.00 / 0.01 | ok / one-hot |" in card
    meta = load_checkpoint(out / "stmanet-tiny").meta
    assert meta["metrics"]["crossval"]["top1"]["mean"] == 0.8
    assert meta["metrics"]["attention_quality"]["spatial"]["stage 2"]["degenerate"] is None
    assert "all 8 subjects" in meta["data_source"]
    assert load_checkpoint(out / "r3d-tiny-baseline").meta["metrics"]["crossval"]["top1"]["mean"] == 0.7
    assert not any("/" in str(v) for k, v in meta.get("training", {}).items() if k.endswith(("_root", "_list")))


def test_test_clips_and_familiarity_are_shipped(tiny_checkpoint, make_video, tmp_path):
    from core.checkpoint import load_familiarity

    table = crossval.summarise(_results("stmanet_r18", [0.8, 0.7, 0.9, 0.8], 0.6), ["stmanet_r18"])
    cv = tmp_path / "cv.json"
    cv.write_text(json.dumps({"table": table, "failures": [], "folds": {k: list(crossval.FOLDS[k]) for k in range(4)}}))
    data = tmp_path / "data"
    for k in range(3):
        make_video(data / f"v{k}.avi", 24)
    (data / "train.txt").write_text("".join(f"v{k}.avi {c}\n" for k, c in enumerate(["wave", "clap", "jump"])))
    calibration = tmp_path / "cal.json"
    calibration.write_text(json.dumps({"rule": "a rule", "margin": 0.15, "margin_std": 0.01, "false_alarm_percent": 5.0,
                                       "out_of_fold": {"held_out_flagged": 19, "held_out_videos": 360,
                                                       "others_flagged": 16, "others_videos": 20}}))
    out = tmp_path / "out"
    assert ship_default.main(["--checkpoint", str(tiny_checkpoint), "--crossval", str(cv), "--out", str(out),
                              "--name", "stmanet-tiny", "--test-clips", "8", "--familiarity", str(calibration),
                              str(calibration), "--train-list", str(data / "train.txt"), "--data-root", str(data)]) == 0
    folder = out / "stmanet-tiny"
    assert load_checkpoint(folder).clip_cfg.max_windows == 8
    reference, threshold, saved = load_familiarity(folder)
    assert reference.shape[0] == 3 and saved["margin"] == 0.15 and threshold == saved["train_median"] - 0.15
    card = (folder / "README.md").read_text()
    assert "mean softmax over its consecutive windows (at most 8, evenly spaced)" in card
    assert "19 of 360 gesture videos of people it never saw flagged, 16 of 20 clips of other actions" in card
