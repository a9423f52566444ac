"""Evaluation: metrics against a hand computation, the CLI end to end (JSON, HTML, terminal),
class checks, unreadable videos, and agreement with the app's predictor."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch

from core.checkpoint import save_checkpoint
from core.data.clips import ClipConfig
from core.data.samples import Sample, VideoList
from core.evaluate import ClassMismatch, classification_metrics, main, match_classes
from core.model import build_model, config_by_name

pytestmark = pytest.mark.usefixtures("one_thread")


def test_classification_metrics_by_hand():
    names = ["a", "b", "c", "d", "e", "f"]
    scores = np.array([
        [0.9, 0.1, 0, 0, 0, 0],  # a -> a
        [0.1, 0.8, 0.1, 0, 0, 0],  # a -> b
        [0.1, 0.2, 0.7, 0, 0, 0],  # b -> c
        [0.0, 0.6, 0.4, 0, 0, 0],  # b -> b
        [0.3, 0.2, 0.1, 0.15, 0.14, 0.11],  # c -> a
        [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],  # f -> f
    ])
    labels = np.array([0, 0, 1, 1, 2, 5])
    m = classification_metrics(scores, labels, names)
    # top-1: rows 0, 3, 5 right = 3/6.
    assert m["top1"] == pytest.approx(0.5)
    # top-5: row 4 ranks a, b, d, e, f above c (0.1) -> c is 6th, a miss; every other row has its
    # label within its 5 best.
    assert m["top5"] == pytest.approx(5 / 6)
    # per class: a 1/2, b 1/2, c 0/1, f 1/1; d and e have no videos and are left out.
    assert m["per_class"] == {"a": 0.5, "b": 0.5, "c": 0.0, "f": 1.0}
    assert m["mean_class_accuracy"] == pytest.approx((0.5 + 0.5 + 0 + 1) / 4)
    expected = np.zeros((6, 6), int)
    for truth, pred in [(0, 0), (0, 1), (1, 2), (1, 1), (2, 0), (5, 5)]:
        expected[truth, pred] += 1
    assert m["confusion"] == expected.tolist() and m["class_names"] == names


def test_classification_metrics_empty():
    m = classification_metrics(np.zeros((0, 2)), np.zeros(0, int), ["x", "y"])
    assert m["top1"] == 0.0 and m["confusion"] == []


@pytest.fixture(scope="module")
def rhythm_checkpoint(tmp_path_factory):
    """An untrained tiny model on the rhythm classes (open gates, so attention matters), 8 frames
    of 64x64: large enough that stage 5 has a 2x2 grid and similarities are not trivially 1."""
    torch.manual_seed(0)
    cfg = config_by_name("stmanet_r10", num_classes=2, base_width=4, stem_temporal_kernel=3, residual_gamma_init=0.5)
    folder = tmp_path_factory.mktemp("eval") / "checkpoint"
    save_checkpoint(folder, build_model(cfg).eval(), ClipConfig(num_frames=8, stride=1, height=64, width=64, max_windows=2),
                    ["fast", "slow"])
    return folder


@pytest.fixture
def data_with_bad_file(rhythm_data, tmp_path):
    """The rhythm val videos plus a file that is not a video, in a list file of their own."""
    (tmp_path / "bad.avi").write_bytes(b"not a video at all")
    lines = (rhythm_data / "val.txt").read_text().splitlines()
    listing = "".join(f"{rhythm_data / line.split()[0]} {line.split()[1]}\n" for line in lines[::2])
    (tmp_path / "list.txt").write_text(listing + f"{tmp_path / 'bad.avi'} slow\n")
    return tmp_path / "list.txt"


def test_cli_writes_json_html_and_summary(rhythm_checkpoint, data_with_bad_file, tmp_path, capsys):
    out_json, out_html = tmp_path / "out" / "report.json", tmp_path / "out" / "report.html"
    code = main(["--checkpoint", str(rhythm_checkpoint), "--data-layout", "list", "--list", str(data_with_bad_file),
                 "--root", "/", "--json", str(out_json), "--html", str(out_html), "--num-workers", "0",
                 "--no-progress"])
    assert code == 0
    report = json.loads(out_json.read_text())
    for key in ("top1", "top5", "mean_class_accuracy", "per_class", "confusion", "class_names", "stage_top1",
                "stage_heads", "similarity_spatial", "similarity_temporal", "diversity_spatial",
                "diversity_temporal", "skipped", "predictions", "videos", "clip"):
        assert key in report, key
    assert report["class_names"] == ["fast", "slow"] and report["videos"] == 6 and report["listed"] == 7
    assert np.asarray(report["confusion"]).sum() == 6 and len(report["predictions"]) == 6
    assert [s["path"] for s in report["skipped"]] == [str(tmp_path / "bad.avi")]
    assert "cannot open" in report["skipped"][0]["error"]
    assert report["clip"]["height"] == 64 and report["clip"]["max_windows"] == 2  # the checkpoint's own clip config
    assert len(report["stage_top1"]) == 4 and list(report["stage_heads"]) == ["stage 2", "stage 3", "stage 4", "stage 5", "fused"]
    for kind in ("spatial", "temporal"):
        matrix = np.asarray(report[f"similarity_{kind}"])
        assert matrix.shape == (4, 4) and np.allclose(np.diag(matrix), 1, atol=1e-5)
        off = matrix[~np.eye(4, dtype=bool)]
        assert report[f"diversity_{kind}"] == pytest.approx(off.mean())
    assert report["diversity_spatial"] < 0.999  # a 2x2 stage-5 grid: a real comparison, not 1 by construction
    quality = report["attention_quality"]
    assert list(quality) == ["spatial", "temporal"] and list(quality["spatial"]) == ["stage 2", "stage 3", "stage 4", "stage 5"]
    for row in quality["spatial"].values():
        assert row["videos"] == 6 and 0 <= row["input_dependence"] <= 2
        assert 1 / row["cells"] - 1e-9 <= row["concentration"] <= 1 + 1e-9
    page = out_html.read_text()
    assert "Attention quality" in page and "on-motion lift" in page
    assert page.count("plotly-graph-div") >= 5 and "Confusion matrix" in page and "bad.avi" in page
    assert not re.search(r"<script[^>]*\bsrc=", page) and len(page) > 1_000_000  # plotly.js inlined: opens offline
    printed = capsys.readouterr().out
    assert "top-1" in printed and "stage 5" in printed and "unreadable: " in printed
    assert "attention quality" in printed and "dependence" in printed


def test_cli_agrees_with_the_predictor(rhythm_checkpoint, rhythm_data, tmp_path):
    """The evaluator and the app see the same windows: same probabilities per video."""
    from core.predict import Predictor

    (tmp_path / "one.txt").write_text("val/fast_0.avi fast\nval/slow_0.avi slow\n")
    main(["--checkpoint", str(rhythm_checkpoint), "--list", str(tmp_path / "one.txt"), "--root", str(rhythm_data),
          "--json", str(tmp_path / "r.json"), "--num-workers", "0", "--no-progress", "--no-diversity"])
    report = json.loads((tmp_path / "r.json").read_text())
    predictor = Predictor(rhythm_checkpoint, device="cpu")
    for row in report["predictions"]:
        probs = predictor.predict(row["path"]).probs
        assert row["probability"] == pytest.approx(float(probs.max()), abs=1e-5)
        assert row["predicted"] == ["fast", "slow"][int(probs.argmax())]


def test_class_mismatch_is_named(rhythm_checkpoint, rhythm_data, tmp_path, caplog):
    (tmp_path / "classes.txt").write_text("fast\nmedium\n")
    (tmp_path / "list.txt").write_text("val/fast_0.avi fast\n")
    code = main(["--checkpoint", str(rhythm_checkpoint), "--list", str(tmp_path / "list.txt"), "--root",
                 str(rhythm_data), "--class-list", str(tmp_path / "classes.txt"), "--no-progress"])
    assert code == 2
    assert "not in the checkpoint: medium" in caplog.text and "not in the dataset: slow" in caplog.text
    assert not list(tmp_path.glob("*.json"))


def test_list_without_class_list_is_matched_by_name_or_index(tmp_path):
    video_list = VideoList([Sample(tmp_path / "x.avi", 0)], ["slow"])  # a file whose only label is 'slow'
    assert match_classes(video_list, ["fast", "slow"], names_authoritative=False).samples[0].label == 1
    by_index = VideoList([Sample(tmp_path / "x.avi", 1)], ["0", "1"])
    assert match_classes(by_index, ["fast", "slow"], names_authoritative=False).samples[0].label == 1
    with pytest.raises(ClassMismatch, match="does not know: jump"):
        match_classes(VideoList([Sample(tmp_path / "x.avi", 0)], ["jump"]), ["fast", "slow"], False)
    with pytest.raises(ClassMismatch, match="out of range: 2"):
        match_classes(VideoList([Sample(tmp_path / "x.avi", 2)], ["0", "1", "2"]), ["fast", "slow"], False)
    with pytest.raises(ClassMismatch, match="another order"):
        match_classes(VideoList([], ["slow", "fast"]), ["fast", "slow"])


def test_ucf101_layout_through_the_train_flags(rhythm_checkpoint, rhythm_data, tmp_path):
    """Any reader of core.train works: a UCF-101-style split of the rhythm videos."""
    root, splits = tmp_path / "videos", tmp_path / "splits"
    for name in ("fast", "slow"):
        (root / name).mkdir(parents=True)
        for k in range(2):
            shutil.copy(rhythm_data / "val" / f"{name}_{k}.avi", root / name / f"v_{name}_g01_c0{k}.avi")
    splits.mkdir()
    (splits / "classInd.txt").write_text("1 fast\n2 slow\n")
    (splits / "trainlist01.txt").write_text("fast/v_fast_g01_c00.avi 1\nslow/v_slow_g01_c00.avi 2\n")
    (splits / "testlist01.txt").write_text("fast/v_fast_g01_c01.avi\nslow/v_slow_g01_c01.avi\n")
    code = main(["--checkpoint", str(rhythm_checkpoint), "--data-layout", "ucf101", "--data-root", str(root),
                 "--splits-dir", str(splits), "--split", "1", "--json", str(tmp_path / "r.json"),
                 "--num-workers", "0", "--no-progress", "--no-diversity"])
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["videos"] == 2 and sorted(p["path"].rsplit("/", 1)[1] for p in report["predictions"]) == [
        "v_fast_g01_c01.avi", "v_slow_g01_c01.avi"]
