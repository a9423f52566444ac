"""Does a video look like anything the model was trained on? A check in the model's feature space.

A classifier's probabilities cannot say "none of these": measured on the gesture models, tai chi,
cricket and the MMAction2 demos got 48-90 % for some gesture, and a rule on the top-1
probability or the margin flagged none of 20 such clips (docs/default_model_notes.md). The
features the classifier reads (STMANetOutput.features, mean over a video's test clips, unit
length) do separate them:

    score(video) = mean cosine similarity to its K nearest training videos
    unfamiliar   = score < threshold

The threshold comes from cross-validation, on people the model never saw: per fold, the margin
between the training videos' own scores (each against the others, itself left out) and the
5th percentile of the held-out people's scores; a model gets threshold = its training videos'
median score - the folds' mean margin (so about 1 in 20 new people's gestures is flagged).
`python -m core.familiarity calibrate` measures that, `add` writes a checkpoint's reference
features and threshold (`core.checkpoint.save_familiarity`).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_checkpoint, save_familiarity
from .data.dataset import load_test_clips
from .data.listfile import read_list_file

log = logging.getLogger(__name__)

K = 5  # neighbours averaged: one look-alike training video is not enough to call a video familiar
FALSE_ALARM = 5.0  # percent of held-out people's videos the threshold is set to flag


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def video_feature(window_features: torch.Tensor) -> np.ndarray:
    """(W, D) features of a video's test clips -> (D,) unit feature of the video."""
    return unit(window_features.float().mean(0).cpu().numpy())


def scores(reference: np.ndarray, features: np.ndarray, leave_self_out: bool = False) -> np.ndarray:
    """Mean cosine similarity of each (unit) feature to its K nearest reference features; with
    leave_self_out, features are the reference itself and each is compared with the others."""
    sim = np.atleast_2d(features) @ reference.T  # (N, R)
    if leave_self_out:
        np.fill_diagonal(sim, -np.inf)
    k = min(K, sim.shape[1] - (1 if leave_self_out else 0))
    return np.sort(sim, axis=1)[:, -k:].mean(1)


def features_of(model, paths: list[Path], clip_cfg) -> np.ndarray:
    """(N, D) unit features of videos, each through its test clips (the predictor's windows)."""
    out = []
    model.eval()
    for path in paths:
        clips, _, _ = load_test_clips(path, clip_cfg)
        with torch.inference_mode():
            out.append(video_feature(model(clips).features))
    return np.stack(out)


def fold_margin(train_features: np.ndarray, held_out: np.ndarray, others: np.ndarray | None = None) -> dict:
    """One cross-validation fold: the margin below the training median that flags FALSE_ALARM %
    of held-out people's videos, and what it flags of `others` (videos of other actions)."""
    own = scores(train_features, train_features, leave_self_out=True)
    held = scores(train_features, held_out)
    threshold = float(np.percentile(held, FALSE_ALARM))
    out = {"train_median": float(np.median(own)), "held_out_p5": threshold,
           "margin": float(np.median(own) - threshold), "held_out_videos": len(held),
           "held_out_scores": [round(float(v), 4) for v in held]}
    if others is not None and len(others):
        other = scores(train_features, others)
        out.update(others=len(other), others_flagged=int((other < threshold).sum()),
                   others_scores=[round(float(v), 4) for v in other])
    return out


def _list_paths(list_file: Path, root: Path) -> list[Path]:
    return [Path(s.path) for s in read_list_file(list_file, root=root).samples]


def calibrate(cv_dir: Path, gesture_root: Path, model: str, others_dir: Path | None,
              test_clips: int | None = None) -> dict:
    """Every fold of a core.crossval folder: margins, and how the rule does on held-out people
    and on the videos in others_dir (non-gesture clips). test_clips: clips per video as the
    shipped model will score them (default: each fold checkpoint's own)."""
    others = sorted(p for p in others_dir.iterdir() if p.is_file()) if others_dir else []
    folds = []
    for fold_dir in sorted(cv_dir.glob("fold*")):
        loaded = load_checkpoint(fold_dir / model / "checkpoint")
        clip_cfg = loaded.clip_cfg if test_clips is None else loaded.clip_cfg.replace(max_windows=test_clips)
        lists = fold_dir / "lists"
        feats = {name: features_of(loaded.model, _list_paths(lists / f"{name}.txt", gesture_root), clip_cfg)
                 for name in ("train", "val")}
        other = features_of(loaded.model, others, clip_cfg) if others else None
        folds.append({"fold": fold_dir.name, **fold_margin(feats["train"], feats["val"], other)})
        log.info("%s: %s", fold_dir.name, folds[-1])
    margins = [f["margin"] for f in folds]
    return {"rule": f"unfamiliar when the mean cosine to the {K} nearest training videos < training median - margin",
            "test_clips": test_clips,
            "margin": float(np.mean(margins)), "margin_std": float(np.std(margins)), "false_alarm_percent": FALSE_ALARM,
            "others": [p.name for p in others], "folds": folds, "out_of_fold": out_of_fold(folds)}


def out_of_fold(folds: list[dict]) -> dict:
    """The rule as a shipped model meets it: each fold judged with the mean margin of the *other*
    folds (its own held-out people never set its threshold). Flagged shares of held-out people's
    videos (false alarms) and of the other actions' videos (hits)."""
    false_alarms = hits = held = others = 0
    for k, f in enumerate(folds):
        margin = float(np.mean([g["margin"] for j, g in enumerate(folds) if j != k])) if len(folds) > 1 else f["margin"]
        threshold = f["train_median"] - margin
        false_alarms += sum(v < threshold for v in f["held_out_scores"])
        held += len(f["held_out_scores"])
        hits += sum(v < threshold for v in f.get("others_scores", []))
        others += len(f.get("others_scores", []))
    return {"held_out_flagged": false_alarms, "held_out_videos": held, "others_flagged": hits, "others_videos": others}


def add_to_checkpoint(folder: Path, train_list: Path, data_root: Path, margin: float, calibration: dict) -> dict:
    """Reference features of the training videos and the threshold, written into the checkpoint."""
    loaded = load_checkpoint(folder)
    reference = features_of(loaded.model, _list_paths(train_list, data_root), loaded.clip_cfg)
    median = float(np.median(scores(reference, reference, leave_self_out=True)))
    threshold = median - margin
    save_familiarity(folder, reference, threshold, {**calibration, "train_median": median, "margin": margin})
    return {"videos": len(reference), "train_median": median, "threshold": threshold}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    cal = sub.add_parser("calibrate", help="margins from a core.crossval folder")
    cal.add_argument("--cv", required=True, type=Path)
    cal.add_argument("--gesture-root", required=True, type=Path)
    cal.add_argument("--model", default="stmanet_r18")
    cal.add_argument("--others", type=Path, default=None, help="a folder of videos of other actions")
    cal.add_argument("--out", type=Path, required=True)
    cal.add_argument("--test-clips", type=int, default=None, help="clips per video (default: each checkpoint's)")
    add = sub.add_parser("add", help="write a checkpoint's reference features and threshold")
    add.add_argument("checkpoint", type=Path)
    add.add_argument("--train-list", required=True, type=Path)
    add.add_argument("--data-root", required=True, type=Path)
    add.add_argument("--calibration", required=True, type=Path, help="the JSON `calibrate` wrote")
    args = parser.parse_args(argv)
    if args.command == "calibrate":
        result = calibrate(args.cv, args.gesture_root, args.model, args.others, args.test_clips)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    else:
        calibration = json.loads(args.calibration.read_text())
        summary = {k: calibration[k] for k in ("rule", "margin", "margin_std", "false_alarm_percent")}
        result = add_to_checkpoint(args.checkpoint, args.train_list, args.data_root, calibration["margin"], summary)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
