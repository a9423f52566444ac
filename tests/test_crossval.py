"""Subject-wise cross-validation: folds, the table's arithmetic, and a real resumable run."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import ROOT, write_rhythm_video
from core import crossval


def test_folds_hold_out_two_subjects_each_and_cover_all_eight():
    held = [crossval.fold_subjects(k)[1] for k in range(4)]
    assert held == [("S1", "S2"), ("S3", "S4"), ("S5", "S6"), ("S7", "S8")]
    train, test = crossval.fold_subjects(2)
    assert len(train) == 6 and not set(train) & set(test)
    with pytest.raises(ValueError, match="fold"):
        crossval.fold_subjects(4)


def test_summary_is_the_mean_and_sample_std_over_folds():
    results = [{"model": "m", "fold": k, "top1": t, "top5": 1.0, "mean_class_accuracy": t,
                "val_top1_by_epoch": {"5": t / 2, "10": t}, "train_seconds": 10.0,
                "attention_quality": {"spatial": {"stage 2": {"input_dependence": d, "concentration": 0.5,
                                                              "motion_lift": None}}}}
               for k, (t, d) in enumerate([(0.5, 0.2), (0.7, 0.4), (0.9, 0.6)])]
    table = crossval.summarise(results, ["m", "absent"])
    assert list(table) == ["m"]
    assert table["m"]["top1"]["mean"] == pytest.approx(0.7)
    assert table["m"]["top1"]["std"] == pytest.approx(np.std([0.5, 0.7, 0.9], ddof=1))
    assert table["m"]["val_top1_by_epoch"] == {5: pytest.approx(0.35), 10: pytest.approx(0.7)}
    q = table["m"]["attention_quality"]["spatial"]["stage 2"]
    assert q["input_dependence"] == pytest.approx(0.4) and q["motion_lift"] is None
    md = crossval.markdown(table)
    assert "70.0 +- 20.0" in md and "held out S1 S2" in md


@pytest.fixture(scope="module")
def fake_gestures(tmp_path_factory):
    """S1..S8 with two 'gestures' (a fast and a slow moving square), two takes each."""
    root = tmp_path_factory.mktemp("gestures")
    rng = np.random.default_rng(0)
    for s in range(1, 9):
        for name, period in (("fast", 4), ("slow", 16)):
            for take in (1, 2):
                write_rhythm_video(root / f"S{s}" / f"{name}_{take}_1m_upper.avi", period, rng)
    return root


def test_one_fold_runs_writes_the_table_and_resumes(fake_gestures, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    out = tmp_path / "cv"
    argv = ["--gesture-root", str(fake_gestures), "--out", str(out), "--models", "stmanet_r10", "--fold-ids", "0",
            "--", "--base-width", "4", "--stem-temporal-kernel", "3", "--num-frames", "8", "--sampling", "segments",
            "--input-mode", "grey_diff", "--diversity-form", "received", "--diversity-grid", "first",
            "--height", "32", "--width", "32", "--epochs", "2", "--val-every", "1", "--batch-size", "4",
            "--optimizer", "adamw", "--lr", "0.003", "--max-val-windows", "2", "--num-workers", "0"]
    assert crossval.main(argv) == 0
    result = json.loads((out / "fold0" / "stmanet_r10" / "result.json").read_text())
    assert result["held_out"] == ["S1", "S2"] and 0 <= result["top1"] <= 1
    assert set(result["val_top1_by_epoch"]) == {"1", "2"}
    assert result["attention_quality"]["spatial"]["stage 2"]["videos"] == 8  # 2 subjects x 4 clips
    summary = json.loads((out / "crossval.json").read_text())
    assert summary["failures"] == [] and "stmanet_r10" in summary["table"]
    assert "stmanet_r10" in (out / "crossval.md").read_text()
    lists = (out / "fold0" / "lists" / "val.txt").read_text()
    assert "S1/" in lists and "S3/" not in lists
    stamp = (out / "fold0" / "stmanet_r10" / "result.json").stat().st_mtime_ns
    assert crossval.main(argv) == 0  # finished tasks are not run again
    assert (out / "fold0" / "stmanet_r10" / "result.json").stat().st_mtime_ns == stamp


def test_bad_train_flags_fail_before_any_run(tmp_path, capsys):
    with pytest.raises(SystemExit):
        crossval.main(["--gesture-root", str(tmp_path), "--out", str(tmp_path / "cv"), "--", "--no-such-flag", "1"])
    assert not (tmp_path / "cv").exists()
