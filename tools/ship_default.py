"""Ship a trained run as a default checkpoint: weights + config.json + a Hub model card.

    python tools/ship_default.py --checkpoint runs/gestures_stmanet_r18/best --eval runs/eval_stmanet.json \
        --baseline-checkpoint runs/gestures_r3d18/best --baseline-eval runs/eval_r3d18.json \
        --notes docs/default_model_notes.md --name stmanet-r18-gestures

Both evaluation reports come from `python -m core.evaluate ... --json`; the card puts the
ST-MANet and its plain backbone side by side (the real-data version of Table 4's first and last
rows), with per-class accuracy and both confusion matrices.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.checkpoint import load_checkpoint, read_meta, save_checkpoint  # noqa: E402

DATA_SOURCE = (
    "Body-gesture videos from joanjaumeoliver/GESTURE-PROJECT (commit a3ffbba, "
    "dataset/BodyGestureDataset): 15 classes, 8 subjects x 45 clips, 640x480 at 10-20 fps. "
    "Trained on subjects S1-S6 (270 clips), validated on S7-S8 (90 clips); split by subject. "
    "The repository states no licence."
)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _confusion_md(report: dict) -> list[str]:
    names = report["class_names"]
    short = [n[:5] for n in names]
    lines = ["| true \\ predicted | " + " | ".join(short) + " |", "|---" * (len(names) + 1) + "|"]
    for name, row in zip(names, report["confusion"]):
        lines.append(f"| {name} | " + " | ".join(str(v) if v else "." for v in row) + " |")
    return lines


def model_card(name: str, meta: dict, report: dict, baseline: dict | None, notes: str) -> str:
    m, c = meta["model"], meta["clip"]
    rows = [("top-1", "top1"), ("top-5", "top5"), ("mean class accuracy", "mean_class_accuracy")]
    front = [
        "---",
        "license: other",
        "license_name: training-data-unlicensed",
        "library_name: pytorch",
        "pipeline_tag: video-classification",
        "tags: [video-classification, action-recognition, gesture-recognition, st-manet, 3d-resnet]",
        "datasets: [joanjaumeoliver/GESTURE-PROJECT]",
        "metrics: [accuracy]",
        "model-index:",
        f"- name: {name}",
        "  results:",
        "  - task: {type: video-classification, name: Gesture recognition}",
        "    dataset: {name: GESTURE-PROJECT body gestures, subjects S7-S8, type: joanjaumeoliver/GESTURE-PROJECT}",
        "    metrics:",
        f"    - {{type: accuracy, name: top-1, value: {report['top1']:.4f}}}",
        f"    - {{type: accuracy, name: top-5, value: {report['top5']:.4f}}}",
        f"    - {{type: accuracy, name: mean class accuracy, value: {report['mean_class_accuracy']:.4f}}}",
        "---",
    ]
    body = [
        f"# {name}: ST-MANet (3D ResNet-{m['depth']}, width {m['base_width']}) for 15 body gestures",
        "",
        "ST-MANet (temporal and spatial deep aggregation at stages 2-5, multi-level fusion, spatial and",
        "temporal diversity losses) trained from scratch on CPU. It is the default model of the",
        "ST-MANet studio app: it loads with no download.",
        "",
        f"Input: {c['num_frames']} consecutive frames (stride {c['stride']}) cropped to the square around what",
        f"moves (`motion_crop`), resized to {c['height']}x{c['width']}; a video's score is the mean softmax over",
        "its windows.",
        "",
        "## Validation (subjects S7-S8, 90 clips, never seen in training)",
        "",
        "| | ST-MANet | plain 3D ResNet (same config, same recipe) |",
        "|---|---|---|",
    ]
    for label, key in rows:
        body.append(f"| {label} | {_pct(report[key])} | {_pct(baseline[key]) if baseline else '-'} |")
    if report.get("stage_heads"):
        heads = report["stage_heads"]
        body.append("| stage heads 2/3/4/5 (Fig. 4) | " + " / ".join(_pct(heads.get(f"stage {i}")) for i in range(2, 6)) +
                    " | " + (" / ".join(_pct(baseline["stage_heads"].get(f"stage {i}")) for i in range(2, 6))
                             if baseline and baseline.get("stage_heads") else "-") + " |")
    if report.get("diversity_spatial") is not None:
        body.append(f"| mean cosine similarity between stages' attention, spatial / temporal | "
                    f"{report['diversity_spatial']:.3f} / {report['diversity_temporal']:.3f} | (no attention) |")
    body += ["", "### Per class", "", "| class | ST-MANet | plain 3D ResNet |", "|---|---|---|"]
    for cls in report["class_names"]:
        b = baseline["per_class"].get(cls) if baseline else None
        body.append(f"| {cls} | {_pct(report['per_class'].get(cls))} | {_pct(b)} |")
    body += ["", "### Confusion matrix, ST-MANet (rows: true, columns: predicted)", ""] + _confusion_md(report)
    if baseline:
        body += ["", "### Confusion matrix, plain 3D ResNet", ""] + _confusion_md(baseline)
    body += ["", notes.strip(), "", "## Data", "", DATA_SOURCE, "",
             "## Use", "", "```python", "from core.predict import Predictor",
             f"prediction = Predictor('checkpoints/{name}').predict('video.mp4', topk=5)",
             "print(prediction.topk)", "```", "",
             "Model configuration: `" + json.dumps(m) + "`", ""]
    return "\n".join(front + body)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--eval", required=True)
    p.add_argument("--baseline-checkpoint")
    p.add_argument("--baseline-eval")
    p.add_argument("--notes", help="markdown inserted into the card (what was tried, the command)")
    p.add_argument("--name", default="stmanet-r18-gestures")
    p.add_argument("--out", default="checkpoints")
    args = p.parse_args(argv)
    report = json.loads(Path(args.eval).read_text())
    baseline = json.loads(Path(args.baseline_eval).read_text()) if args.baseline_eval else None
    notes = Path(args.notes).read_text() if args.notes else ""
    metrics = {k: report[k] for k in ("top1", "top5", "mean_class_accuracy", "per_class", "stage_heads",
                                      "diversity_spatial", "diversity_temporal")}
    if baseline:
        metrics["baseline_plain_3d_resnet"] = {k: baseline[k] for k in ("top1", "top5", "mean_class_accuracy", "per_class")}
    for source, name, extra in ((args.checkpoint, args.name, metrics),
                                (args.baseline_checkpoint, args.name.replace("stmanet", "r3d") + "-baseline",
                                 {k: baseline[k] for k in ("top1", "top5", "mean_class_accuracy", "per_class")} if baseline else None)):
        if not source:
            continue
        loaded = load_checkpoint(source)
        meta = read_meta(Path(source))
        training = {k: v for k, v in meta.get("training", {}).items()
                    if k not in ("run_dir", "frame_cache", "show_progress", "resume")}
        folder = Path(args.out) / name
        card = model_card(name, {**meta, "model": loaded.model_cfg.to_dict()}, report, baseline, notes) \
            if name == args.name else None
        # Ship the window cap the reported evaluation used, so the app scores videos the same way.
        clip_cfg = loaded.clip_cfg.replace(max_windows=report["clip"]["max_windows"])
        save_checkpoint(folder, loaded.model, clip_cfg, loaded.class_names, metrics=extra,
                        training=training, data_source=DATA_SOURCE, card=card)
        print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
