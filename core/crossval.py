"""Subject-wise cross-validation on the gesture set: every setting is chosen on its fold mean.

    python -m core.crossval --gesture-root ../shared/data/gestures --out runs/cv/recipe \
        --models stmanet_r18 r3d18_baseline --jobs 2 -- <any python -m core.train flags>

The 8 subjects make 4 folds; fold k trains on 6 subjects and tests on S(2k+1), S(2k+2). Each
(fold, model) is one `core.train` run in its own subprocess (one thread each with --jobs 2 on
two cores) under OUT/fold<k>/<model>/, evaluated on its held-out subjects with its last epoch's
weights (never the best epoch: that would choose on the test subjects) into result.json.

Resumable: a finished task (result.json present) is skipped (delete result.json to evaluate a
finished run again, e.g. with another --eval-windows: training is then not repeated), an unfinished run continues from its
last per-epoch checkpoint (`--resume`), so a stopped search is continued by the same command.
The table (OUT/crossval.json, OUT/crossval.md) has per fold and mean +- std top-1, top-5 and
mean class accuracy per model, the attention-quality figures, and the fold-mean validation
top-1 per validated epoch (the curve an epoch count is chosen from). `--fold-ids 0` runs one
fold: the cheap search step; confirm finalists on all four.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from .attention_quality import degeneracy
from .checkpoint import load_training_state
from .data.gestures import write_gesture_lists
from .data.listfile import read_list_file
from .evaluate import evaluate_checkpoint
from .train import build_parser as train_parser, config_from_args

log = logging.getLogger(__name__)

SUBJECTS = tuple(f"S{i}" for i in range(1, 9))
FOLDS = tuple((SUBJECTS[2 * k], SUBJECTS[2 * k + 1]) for k in range(4))  # held-out pairs
METRICS = ("top1", "top5", "mean_class_accuracy")


def fold_subjects(fold: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(train subjects, held-out subjects) of fold 0..3."""
    if not 0 <= fold < len(FOLDS):
        raise ValueError(f"fold must be in 0..{len(FOLDS) - 1}, got {fold}")
    held = FOLDS[fold]
    return tuple(s for s in SUBJECTS if s not in held), held


def task_dir(out: Path, fold: int, model: str) -> Path:
    return out / f"fold{fold}" / model


def train_argv(gesture_root: str, lists: Path, run_dir: Path, model: str, train_flags: list[str]) -> list[str]:
    """core.train's arguments for one task: the fold's lists, the model, then the user's flags."""
    return ["--data-layout", "list", "--data-root", str(gesture_root), "--train-list", str(lists / "train.txt"),
            "--val-list", str(lists / "val.txt"), "--class-list", str(lists / "classes.txt"),
            "--model", model, "--run-dir", str(run_dir), "--resume", "--no-show-progress", *train_flags]


def run_task(args, fold: int, model: str) -> dict:
    """Train (or resume) one (fold, model) in a subprocess, then evaluate it; result.json is the mark."""
    run_dir = task_dir(Path(args.out), fold, model)
    result_path = run_dir / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    train_subjects, held = fold_subjects(fold)
    lists = Path(args.out) / f"fold{fold}" / "lists"
    write_gesture_lists(args.gesture_root, lists, train_subjects, held)
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    command = [sys.executable, "-m", "core.train", *train_argv(args.gesture_root, lists, run_dir, model, args.train_flags)]
    started = time.process_time(), time.time()
    with (run_dir / "train.log").open("a") as logfile:
        code = subprocess.run(command, env=env, stdout=logfile, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise RuntimeError(f"fold {fold} {model}: training exited with {code}; see {run_dir / 'train.log'}")
    result = evaluate_task(run_dir, lists, args)
    result.update(fold=fold, model=model, held_out=list(held), wall_s=time.time() - started[1])
    result_path.write_text(json.dumps(result, indent=2))
    return result


def evaluate_task(run_dir: Path, lists: Path, args) -> dict:
    """The last checkpoint on the held-out subjects: metrics, attention quality, the epoch curve."""
    torch.set_num_threads(args.threads)
    video_list = read_list_file(lists / "val.txt", args.gesture_root, class_list=lists / "classes.txt")
    report = evaluate_checkpoint(run_dir / "checkpoint", video_list, "cpu", max_windows=args.eval_windows,
                                 num_workers=0)
    history = load_training_state(run_dir / "checkpoint").get("history", [])
    curve = {int(h["epoch"]): h["val_acc"] for h in history if h.get("val_acc") is not None}
    cpu_s = sum(float(h.get("epoch_time_s", 0.0)) for h in history)
    return {**{m: report[m] for m in METRICS}, "attention_quality": report.get("attention_quality", {}),
            "val_top1_by_epoch": curve, "train_seconds": cpu_s, "epochs": len(history)}


def summarise(results: list[dict], models: list[str]) -> dict:
    """Per model: per-fold metrics, mean and std over folds, the fold-mean epoch curve, attention."""
    table = {}
    for model in models:
        rows = sorted((r for r in results if r["model"] == model), key=lambda r: r["fold"])
        if not rows:
            continue
        entry = {"folds": {r["fold"]: {m: r[m] for m in METRICS} for r in rows}}
        for m in METRICS:
            values = np.array([r[m] for r in rows])
            entry[m] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
        epochs = sorted(set.intersection(*(set(map(int, r["val_top1_by_epoch"])) for r in rows)))
        entry["val_top1_by_epoch"] = {e: float(np.mean([r["val_top1_by_epoch"][e] if e in r["val_top1_by_epoch"]
                                                        else r["val_top1_by_epoch"][str(e)] for r in rows]))
                                      for e in epochs}
        entry["attention_quality"] = _mean_quality([r.get("attention_quality", {}) for r in rows])
        entry["train_seconds"] = float(sum(r.get("train_seconds", 0.0) for r in rows))
        table[model] = entry
    return table


def _mean_quality(reports: list[dict]) -> dict:
    """Fold means of each stage's dependence, concentration and lift."""
    out: dict = {}
    for kind in ("spatial", "temporal"):
        stages = sorted(set().union(*(r.get(kind, {}).keys() for r in reports)))
        for stage in stages:
            rows = [r[kind][stage] for r in reports if stage in r.get(kind, {})]
            mean = {key: _nanmean([row.get(key) for row in rows])
                    for key in ("input_dependence", "concentration", "motion_lift")}
            cells = int(rows[0].get("cells") or 0)
            mean.update(cells=cells, degenerate=degeneracy(mean["input_dependence"], mean["concentration"], cells))
            out.setdefault(kind, {})[stage] = mean
    return out


def _nanmean(values) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def markdown(table: dict) -> str:
    lines = ["| model | fold | top-1 | top-5 | mean class acc. |", "|---|---|---|---|---|"]
    for model, entry in table.items():
        for fold, row in entry["folds"].items():
            lines.append(f"| {model} | {fold} (held out {' '.join(FOLDS[int(fold)])}) | "
                         + " | ".join(f"{100 * row[m]:.1f} %" for m in METRICS) + " |")
        lines.append(f"| **{model}** | **mean +- std** | "
                     + " | ".join(f"**{100 * entry[m]['mean']:.1f} +- {100 * entry[m]['std']:.1f}**" for m in METRICS)
                     + " |")
    lines += ["", "| model | attention | stage | input dependence | concentration | on-motion lift |",
              "|---|---|---|---|---|---|"]
    for model, entry in table.items():
        for kind, stages in entry["attention_quality"].items():
            for stage, q in stages.items():
                lines.append(f"| {model} | {kind} | {stage} | " + " | ".join(
                    "-" if q[k] is None else f"{q[k]:.2f}" for k in ("input_dependence", "concentration", "motion_lift"))
                    + " |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gesture-root", required=True, help="the gesture set (S1..S8 folders)")
    parser.add_argument("--out", required=True, help="folder for the runs and the table")
    parser.add_argument("--models", nargs="+", default=["stmanet_r18", "r3d18_baseline"])
    parser.add_argument("--fold-ids", nargs="+", type=int, default=list(range(len(FOLDS))))
    parser.add_argument("--jobs", type=int, default=1, help="tasks run side by side")
    parser.add_argument("--threads", type=int, default=1, help="threads per task")
    parser.add_argument("--eval-windows", type=int, default=None,
                        help="test clips per video (default: the run's --max-val-windows)")
    parser.add_argument("train_flags", nargs=argparse.REMAINDER, help="-- then core.train flags for every task")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    flags = list(args.train_flags)
    args.train_flags = flags[1:] if flags[:1] == ["--"] else flags
    for fold in args.fold_ids:
        fold_subjects(fold)
    if args.jobs < 1 or args.threads < 1:
        raise ValueError("--jobs and --threads must be >= 1")
    probe = ["--run-dir", "x", "--model", args.models[0], *args.train_flags]
    config_from_args(train_parser().parse_args(probe))  # bad train flags fail here, before any run
    return args


def run(args) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "command.json").write_text(json.dumps({"models": args.models, "fold_ids": args.fold_ids,
                                                  "eval_windows": args.eval_windows,
                                                  "train_flags": args.train_flags}, indent=2))
    tasks = [(fold, model) for fold in args.fold_ids for model in args.models]
    results, failures = [], []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_task, args, fold, model): (fold, model) for fold, model in tasks}
        for future, (fold, model) in futures.items():
            try:
                results.append(future.result())
            except Exception as exc:  # one failed task is reported; the others' results stand
                failures.append(f"fold {fold} {model}: {exc}")
    table = summarise(results, args.models)
    summary = {"table": table, "failures": failures, "folds": {k: list(FOLDS[k]) for k in args.fold_ids}}
    (out / "crossval.json").write_text(json.dumps(summary, indent=2))
    (out / "crossval.md").write_text(markdown(table))
    return summary


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        args = parse_args(argv)
    except (ValueError, SystemExit) as exc:
        if isinstance(exc, SystemExit):
            raise
        log.error("%s", exc)
        return 2
    summary = run(args)
    print(markdown(summary["table"]))
    for failure in summary["failures"]:
        log.error("%s", failure)
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
