"""The Table 4 ablation: six variants trained and evaluated by one command, a table of six rows,
and a second run of the same command that continues instead of starting over."""
from __future__ import annotations

import json

import pytest

from core.ablation import main, model_cost
from core.data.clips import ClipConfig
from core.model import config_by_name, variant_names

pytestmark = pytest.mark.usefixtures("one_thread")


def steps(run_dir) -> int:
    return sum('"event": "step"' in line for line in (run_dir / "metrics.jsonl").read_text().splitlines())


def test_ablation_trains_six_variants_and_writes_the_table(rhythm_data, tmp_path):
    (tmp_path / "val.txt").write_text("val/fast_0.avi fast\nval/slow_0.avi slow\n")
    out = tmp_path / "ablation"
    argv = ["--data-layout", "list", "--data-root", str(rhythm_data), "--train-list", str(rhythm_data / "train.txt"),
            "--val-list", str(tmp_path / "val.txt"), "--depth", "10", "--base-width", "4", "--stem-temporal-kernel", "3",
            "--num-frames", "8", "--stride", "1", "--height", "32", "--width", "32", "--max-val-windows", "1",
            "--epochs", "1", "--batch-size", "4", "--max-steps-per-epoch", "1", "--num-workers", "0",
            "--no-show-progress", "--out", str(out)]
    assert main(argv + ["--variants", "r3d10_baseline", "stmanet_r10"]) == 0  # a first, partial ablation
    assert steps(out / "stmanet_r10") == 1
    assert main(argv) == 0  # the whole ablation continues: the two finished variants are not retrained
    assert steps(out / "stmanet_r10") == 1 and steps(out / "r3d10_baseline") == 1

    table = json.loads((out / "table.json").read_text())
    rows = table["rows"]
    assert [r["variant"] for r in rows] == variant_names(10)
    assert [(r["TDA"], r["SDA"], r["MF"]) for r in rows] == [
        (False, False, False), (True, False, False), (False, True, False), (True, True, False),
        (False, False, True), (True, True, True)]
    for row in rows:
        assert not row.get("error") and 0 <= row["top1"] <= 1 and row["top5"] == 1.0 and row["videos"] == 2
        assert (out / row["variant"] / "checkpoint" / "config.json").exists()
    cost = {r["variant"]: r["GFLOPs"] for r in rows}
    assert cost["r3d10_baseline"] < cost["stmanet_r10_sda"] < cost["stmanet_r10_tda_sda"] <= cost["stmanet_r10"]
    assert rows[0]["params (M)"] < rows[-1]["params (M)"]
    markdown = (out / "table.md").read_text().splitlines()
    body = [line for line in markdown if line.startswith("| ") and "variant" not in line]
    assert len(body) == 6 and markdown[2].startswith("| variant | TDA | SDA | MF | top1 | top5 | mean class acc")
    assert body[0].startswith("| r3d10_baseline | – | – | – |") and body[-1].startswith("| stmanet_r10 | ✓ | ✓ | ✓ |")


def test_cost_matches_the_documented_r50_figures():
    """docs/model.md: 3D ResNet-50 40.28 GFLOPs / 46.41 M params, ST-MANet-50 48.86 / 60.20 (101 classes)."""
    clip = ClipConfig(num_frames=32, stride=2, height=112, width=112)
    base, full = (model_cost(config_by_name(n, num_classes=101), clip) for n in ("r3d50_baseline", "stmanet_r50"))
    assert base == pytest.approx((40.28, 46.41), abs=0.01) and full == pytest.approx((48.86, 60.20), abs=0.01)


def test_model_and_run_dir_flags_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--model", "stmanet_r18", "--out", str(tmp_path)])
    assert "--model is set by the ablation" in capsys.readouterr().err
