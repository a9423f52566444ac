"""Ship a trained run as a default checkpoint: weights + config.json + a Hub model card.

    python tools/ship_default.py --checkpoint runs/ship/stmanet_r18/checkpoint \
        --baseline-checkpoint runs/ship/r3d18_baseline/checkpoint --crossval runs/cv/main/crossval.json \
        [--ablation runs/cv/nodiv/crossval.json] [--old-eval runs/old_default/stmanet.json] \
        --notes docs/default_model_notes.md --name stmanet-r18-gestures

The shipped weights are trained on every subject; what they are worth on people never seen is
the subject-wise cross-validation of the same recipe (core.crossval), which the card reports
per fold and as mean +- std for ST-MANet and its plain backbone, with the attention-quality
figures per stage (fold means, held-out videos) beside those of the model it replaces.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.checkpoint import describe_clip_input, load_checkpoint, read_meta, save_checkpoint  # noqa: E402
from core.crossval import FOLDS, markdown  # noqa: E402
from core.familiarity import add_to_checkpoint  # noqa: E402

DATA_SOURCE = (
    "Body-gesture videos from joanjaumeoliver/GESTURE-PROJECT (commit a3ffbba, "
    "dataset/BodyGestureDataset): 15 classes, 8 subjects x 45 clips, 640x480 at 10-20 fps. "
    "Trained on all 8 subjects (360 clips); measured by subject-wise 4-fold cross-validation of the same "
    "recipe (each fold trains on 6 subjects and tests on the 2 others). The repository states no licence."
)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _quality_rows(new: dict, old: dict | None) -> list[str]:
    lines = ["| attention | stage | input dependence, new / old | concentration, new / old | "
             "on-motion lift, new / old | verdict, new / old |", "|---|---|---|---|---|---|"]
    fmt = lambda row, k: "-" if not row or row.get(k) is None else f"{max(row[k], 0.0):.2f}"  # noqa: E731
    for kind, stages in new.items():
        for stage, row in stages.items():
            before = ((old or {}).get(kind) or {}).get(stage)
            cells = [f"{fmt(row, k)} / {fmt(before, k)}" for k in ("input_dependence", "concentration", "motion_lift")]
            verdict = f"{row.get('degenerate') or 'ok'} / {(before or {}).get('degenerate') or 'ok' if before else '-'}"
            lines.append(f"| {kind} | {stage} | " + " | ".join(cells) + f" | {verdict} |")
    return lines


def model_card(name: str, meta: dict, cv: dict, ablation: dict | None, old: dict | None, notes: str,
               also: list[tuple[str, dict]] = (), familiarity: dict | None = None) -> str:
    m, c = meta["model"], meta["clip"]
    table = cv["table"]
    ours, plain = table.get("stmanet_r18", {}), table.get("r3d18_baseline", {})
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
        "    dataset: {name: GESTURE-PROJECT body gestures, subject-wise 4-fold cross-validation, "
        "type: joanjaumeoliver/GESTURE-PROJECT}",
        "    metrics:",
        f"    - {{type: accuracy, name: top-1 (cross-validation mean), value: {ours['top1']['mean']:.4f}}}",
        f"    - {{type: accuracy, name: top-5 (cross-validation mean), value: {ours['top5']['mean']:.4f}}}",
        f"    - {{type: accuracy, name: mean class accuracy (cross-validation mean), "
        f"value: {ours['mean_class_accuracy']['mean']:.4f}}}",
        "---",
    ]
    body = [
        f"# {name}: ST-MANet (3D ResNet-{m['depth']}, width {m['base_width']}) for 15 body gestures",
        "",
        "ST-MANet (temporal and spatial deep aggregation at stages 2-5, multi-level fusion, "
        + ("spatial and temporal diversity losses" if m.get("lambda_temporal") else
           "the spatial diversity loss on received maps; lambda2 = 0")
        + ") trained from scratch on CPU. It is the default model of the ST-MANet studio app: it",
        "loads with no download. Where it departs from the paper, and why: `docs/model.md`.",
        "",
        f"Input: {describe_clip_input(m, c)}",
        "",
        "## People it never saw: subject-wise cross-validation (same recipe, seeds and folds for both models)",
        "",
        "Folds: " + "; ".join(f"{k}: held out {' and '.join(FOLDS[int(k)])}" for k in cv["folds"]) + ".",
        "The weights shipped here are the same recipe trained on all 8 subjects.",
        "",
        markdown(table).strip(),
        "",
    ]
    if ours and plain:
        gap = 100 * (ours["top1"]["mean"] - plain["top1"]["mean"])
        body += [f"ST-MANet minus its plain backbone, top-1: **{gap:+.1f} points** (fold mean).", ""]
    if ablation:
        body += ["### Table 4 ablation on the same folds: ST-MANet without the diversity loss", "", markdown(ablation["table"]).strip(), ""]
    for title, extra in also:
        body += [f"### {title}", "", markdown(extra["table"]).strip(), ""]
    if familiarity:
        oof = familiarity["out_of_fold"]
        body += ["## Videos unlike the training videos", "",
                 f"A prediction says plainly when a video does not look like the training videos ({familiarity['rule']}; "
                 f"margin {familiarity['margin']:.3f} +- {familiarity['margin_std']:.3f} over the folds, `core.familiarity`). "
                 f"Judged out of fold (each fold with the other folds' margin): {oof['held_out_flagged']} of "
                 f"{oof['held_out_videos']} gesture videos of people it never saw flagged, {oof['others_flagged']} of "
                 f"{oof['others_videos']} clips of other actions (the 5 non-gesture clips x 4 fold models).", ""]
    body += ["## Attention quality per stage: this model (cross-validation folds, held-out subjects) / the model it replaced (S7-S8)",
             "", "Input dependence 0: the same map for every video. Concentration: the share of cells effectively "
             "attended (1/cells: one-hot). On-motion lift > 1: attention on what moves.", ""]
    body += _quality_rows(ours.get("attention_quality", {}), (old or {}).get("attention_quality"))
    body += ["", notes.strip(), "", "## Data", "", DATA_SOURCE, "",
             "## Use", "", "```python", "from core.predict import Predictor",
             f"prediction = Predictor('checkpoints/{name}').predict('video.mp4', topk=5)",
             "print(prediction.topk)", "```", "",
             "Model configuration: `" + json.dumps(m) + "`", ""]
    return "\n".join(front + body)


def _summary(entry: dict) -> dict:
    """What config.json keeps of a model's cross-validation: means, stds, per-fold numbers."""
    return {k: entry[k] for k in ("top1", "top5", "mean_class_accuracy", "folds")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--baseline-checkpoint")
    p.add_argument("--crossval", required=True, help="crossval.json of the recipe (both models)")
    p.add_argument("--ablation", help="crossval.json of the recipe without the diversity losses")
    p.add_argument("--old-eval", help="core.evaluate JSON of the model being replaced (attention quality)")
    p.add_argument("--also", nargs=2, action="append", default=[], metavar=("TITLE", "CROSSVAL_JSON"),
                   help="another cross-validation on the same folds to show in the card")
    p.add_argument("--notes", help="markdown inserted into the card (what was tried, the command)")
    p.add_argument("--name", default="stmanet-r18-gestures")
    p.add_argument("--out", default="checkpoints")
    p.add_argument("--test-clips", type=int, default=None,
                   help="clips per video at test time (ClipConfig.max_windows), chosen on the cross-validation")
    p.add_argument("--familiarity", nargs=2, default=None, metavar=("CALIBRATION_JSON", "BASELINE_CALIBRATION_JSON"),
                   help="core.familiarity calibrations: write each model's training-video reference and threshold")
    p.add_argument("--train-list", help="the shipped models' training list (for --familiarity)")
    p.add_argument("--data-root", help="the folder the training list is relative to")
    args = p.parse_args(argv)
    cv = json.loads(Path(args.crossval).read_text())
    ablation = json.loads(Path(args.ablation).read_text()) if args.ablation else None
    old = json.loads(Path(args.old_eval).read_text()) if args.old_eval else None
    notes = Path(args.notes).read_text() if args.notes else ""
    also = [(title, json.loads(Path(path).read_text())) for title, path in args.also]
    table = cv["table"]
    ours = {"crossval": _summary(table["stmanet_r18"]),
            "attention_quality": table["stmanet_r18"]["attention_quality"]}
    if "r3d18_baseline" in table:
        ours["crossval_plain_3d_resnet"] = _summary(table["r3d18_baseline"])
    plain = {"crossval": _summary(table["r3d18_baseline"])} if "r3d18_baseline" in table else None
    for source, name, metrics in ((args.checkpoint, args.name, ours),
                                  (args.baseline_checkpoint, args.name.replace("stmanet", "r3d") + "-baseline", plain)):
        if not source:
            continue
        loaded = load_checkpoint(source)
        meta = read_meta(Path(source))
        training = {k: v for k, v in meta.get("training", {}).items()
                    if k not in ("run_dir", "frame_cache", "show_progress", "resume", "data_root", "train_list",
                                 "val_list", "class_list")}
        folder = Path(args.out) / name
        clip = loaded.clip_cfg if args.test_clips is None else loaded.clip_cfg.replace(max_windows=args.test_clips)
        familiar = json.loads(Path(args.familiarity[0]).read_text()) if args.familiarity else None
        card = model_card(name, {**meta, "model": loaded.model_cfg.to_dict(), "clip": clip.to_dict()}, cv, ablation,
                          old, notes, also, familiar) if name == args.name else None
        save_checkpoint(folder, loaded.model, clip, loaded.class_names, metrics=metrics,
                        training=training, data_source=DATA_SOURCE, card=card)
        if args.familiarity:  # after the save: the reference is tied to this save of the weights
            calibration = json.loads(Path(args.familiarity[0 if name == args.name else 1]).read_text())
            summary = {k: calibration[k] for k in ("rule", "margin", "margin_std", "false_alarm_percent", "out_of_fold")}
            print(add_to_checkpoint(folder, Path(args.train_list), Path(args.data_root), calibration["margin"], summary))
        print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
