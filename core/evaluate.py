"""Evaluation: the paper's test protocol and the numbers a reader of the paper asks for.

A video's score is the mean of its windows' softmax (paper 4.1). Reported: top-1, top-5, mean
class accuracy, per-class accuracy, the confusion matrix, the accuracy of each stage's own head
beside the fused head (the paper's Fig. 4), and the mean cosine similarity between the stages'
attention maps (what the diversity losses of eq. 7 push down), and per stage whether the attention
means anything: input dependence, concentration and on-motion lift (core.attention_quality).

    python -m core.evaluate --checkpoint DIR --data-layout list --list FILE --root DIR --json OUT.json [--html OUT.html]
    python -m core.evaluate --checkpoint DIR --data-layout ucf101 --data-root UCF-101 --splits-dir ucfTrainTestlist --split 1 --json OUT.json

Clips are cut with the checkpoint's own ClipConfig (config.json), so a model is tested on what
it was trained for. The dataset's classes must be the checkpoint's (an error names the
difference). Videos that cannot be decoded are reported by path and left out, never replaced.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from tqdm import tqdm

from .attention_quality import AttentionQuality
from .checkpoint import CheckpointError, load_checkpoint, read_meta, resolve_checkpoint
from .data.dataset import load_test_clips
from .data.listfile import read_list_file
from .data.samples import Sample, VideoList
from .data.sources import LAYOUTS, read_dataset
from .report import write_html_report
from .capability import DEVICE_CHOICES, resolve_device, with_cpu_fallback
from .model.losses import stage_similarity

log = logging.getLogger(__name__)

STAGES = ("stage 2", "stage 3", "stage 4", "stage 5")


def _single(batch):
    return batch[0]


@dataclass(frozen=True)
class Unreadable:
    """Stands in for a video's windows when it cannot be decoded (picklable, so it crosses workers)."""

    path: str
    error: str


class EvalVideos(Dataset):
    """Eval items (windows (W,3,T,H,W), label) read with `load_test_clips`; an unreadable video
    gives (Unreadable, label) instead of another video's windows, so nothing is counted twice."""

    def __init__(self, video_list, clip_cfg) -> None:
        self.samples = list(video_list.samples)
        self.class_names = list(video_list.class_names)
        self.cfg = clip_cfg

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        try:
            clips, _, _ = load_test_clips(sample.path, self.cfg)
        except Exception as exc:  # one bad file is a line in the report, not a crash
            return Unreadable(str(sample.path), f"{type(exc).__name__}: {exc}"), sample.label
        return clips, sample.label


@torch.inference_mode()
def evaluate_model(model, dataset, device, class_names: list[str], num_workers: int = 0,
                   with_diversity: bool = True, batch_windows: int = 8, progress: bool = False) -> dict:
    """Evaluate `model` on an eval-mode dataset (items: windows (W,3,T,H,W), label; windows may be
    an `Unreadable`, which is skipped and listed under "skipped")."""
    model.eval()
    device = torch.device(device)
    loader = DataLoader(dataset, batch_size=1, collate_fn=_single, num_workers=num_workers)
    k = len(class_names)
    fused, stages, labels, kept, skipped, shapes = [], [], [], [], [], []
    similarity = {"spatial": [torch.zeros(4, 4, dtype=torch.float64), 0],
                  "temporal": [torch.zeros(4, 4, dtype=torch.float64), 0]}
    clip_cfg = getattr(dataset, "cfg", None)
    quality = AttentionQuality(clip_cfg) if with_diversity and clip_cfg is not None else None
    iterator = loader
    if progress:
        iterator = tqdm(loader, total=len(dataset), desc="evaluate", leave=False)
    for index, (windows, label) in enumerate(iterator):
        if isinstance(windows, Unreadable):
            log.warning("skipping unreadable video %s (%s)", windows.path, windows.error)
            skipped.append({"path": windows.path, "error": windows.error})
            continue
        probs, stage_probs, maps = [], [], []
        for chunk in windows.split(batch_windows):
            out, device = with_cpu_fallback(lambda dev: model.to(dev)(chunk.to(dev), return_attention=with_diversity),
                                            device)  # an operator MPS lacks: the rest runs on the CPU
            shapes = shapes or [list(s) for s in out.stage_shapes]
            probs.append(out.logits.float().softmax(-1).cpu())
            if out.stage_logits is not None:
                stage_probs.append(torch.stack([s.float().softmax(-1).cpu() for s in out.stage_logits], 1))
            if quality is not None:
                maps.append((out.spatial_attention, out.temporal_attention))
            if with_diversity:
                for name, sim in zip(("spatial", "temporal"), stage_similarity(out)):
                    if sim is not None:  # (B, 4, 4): summed per window, averaged at the end
                        similarity[name][0] += sim.double().sum(0).cpu()
                        similarity[name][1] += sim.shape[0]
        if quality is not None and maps:
            quality.add_video(windows, *_joined(maps), out.stage_shapes)
        fused.append(torch.cat(probs).mean(0))
        if stage_probs:
            stages.append(torch.cat(stage_probs).mean(0))  # (4, K)
        labels.append(int(label))
        kept.append(index)
    scores = torch.stack(fused).numpy() if fused else np.zeros((0, k))
    y = np.asarray(labels, dtype=int)
    metrics = classification_metrics(scores, y, class_names)
    metrics["stage_top1"] = (
        [float((torch.stack(stages)[:, i].argmax(-1).numpy() == y).mean()) for i in range(4)] if stages else []
    )
    for name, (total, count) in similarity.items():
        if count:
            matrix = total / count
            off_diagonal = matrix[~torch.eye(len(matrix), dtype=torch.bool)]
            metrics[f"diversity_{name}"] = float(off_diagonal.mean())
            metrics[f"similarity_{name}"] = matrix.tolist()
    if quality is not None:
        metrics["attention_quality"] = quality.report()
    metrics["videos"] = int(len(y))
    metrics["stage_shapes"] = shapes  # (T_i, H_i, W_i) of stages 2..5: the grid the similarities are taken on
    metrics["skipped"] = skipped
    metrics["predictions"] = _predictions(dataset, kept, scores, class_names)
    return metrics


def _joined(maps: list[tuple[list, list]]) -> tuple[list, list]:
    """Per-chunk (spatial, temporal) lists of stage maps -> one (spatial, temporal) over all windows."""
    joined = []
    for kind in (0, 1):
        stages = zip(*(chunk[kind] for chunk in maps))
        joined.append([None if parts[0] is None else torch.cat(parts) for parts in stages])
    return joined[0], joined[1]


def _predictions(dataset, kept: list[int], scores: np.ndarray, class_names: list[str]) -> list[dict]:
    """Per video: path, true class, predicted class and its probability (for finding the misses)."""
    samples = getattr(dataset, "samples", None)
    if samples is None:
        return []
    out = []
    for index, row in zip(kept, scores):
        best = int(row.argmax())
        out.append({"path": str(samples[index].path), "label": class_names[samples[index].label],
                    "predicted": class_names[best], "probability": float(row[best])})
    return out


def classification_metrics(scores: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    """top1, top5, mean_class_accuracy, per_class {name: acc}, confusion [[...]] (rows: truth)."""
    k = len(class_names)
    if len(labels) == 0:
        return {"top1": 0.0, "top5": 0.0, "mean_class_accuracy": 0.0, "per_class": {}, "confusion": [],
                "class_names": list(class_names)}
    predicted = scores.argmax(1)
    top5 = np.argsort(-scores, axis=1)[:, : min(5, k)]
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (labels, predicted), 1)
    support = confusion.sum(1)
    per_class = {name: float(confusion[i, i] / support[i]) for i, name in enumerate(class_names) if support[i]}
    return {
        "top1": float((predicted == labels).mean()),
        "top5": float((top5 == labels[:, None]).any(1).mean()),
        "mean_class_accuracy": float(np.mean(list(per_class.values()))),
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "class_names": list(class_names),
    }


# ---------------------------------------------------------------------------- a checkpoint on a dataset
class ClassMismatch(ValueError):
    """The dataset's classes are not the checkpoint's; the message names the difference."""


def match_classes(video_list, class_names: list[str], names_authoritative: bool = True):
    """`video_list` relabelled onto the checkpoint's class order, or ClassMismatch.

    names_authoritative: the reader's class list is the dataset's whole vocabulary (a class
    file, classInd.txt, the class folders): it must equal the checkpoint's. Otherwise (a list
    file without a class list: only the labels that occur are known) the labels must be names
    among the checkpoint's classes, or indices into them."""
    have, want = list(video_list.class_names), list(class_names)
    if have == want:
        return video_list
    if names_authoritative:
        extra, missing = sorted(set(have) - set(want)), sorted(set(want) - set(have))
        if not extra and not missing:
            raise ClassMismatch(f"the dataset lists the checkpoint's {len(want)} classes in another order; "
                                f"first difference: dataset {_first_difference(have, want)}")
        raise ClassMismatch(f"the dataset's classes are not the checkpoint's: not in the checkpoint: "
                            f"{_names(extra)}; in the checkpoint but not in the dataset: {_names(missing)}")
    used = sorted({video_list.class_names[s.label] for s in video_list.samples})
    by_index = all(n.isdigit() for n in have) and not set(used) <= set(want)
    if by_index:
        index = {n: int(n) for n in have}
        unknown = [n for n in used if int(n) >= len(want)]
    else:
        index = {n: want.index(n) for n in have if n in want}
        unknown = [n for n in used if n not in index]
    if unknown:
        what = "class indices out of range" if by_index else "classes the checkpoint does not know"
        raise ClassMismatch(f"the dataset has {what}: {_names(unknown)}; the checkpoint's {len(want)} "
                            f"classes are {_names(want)}")
    samples = [Sample(s.path, index[have[s.label]]) for s in video_list.samples]
    return VideoList(samples, want, list(getattr(video_list, "problems", [])))


def _names(names, k: int = 8) -> str:
    names = list(names)
    return ", ".join(names[:k]) + (f" (and {len(names) - k} more)" if len(names) > k else "") if names else "none"


def _first_difference(have: list[str], want: list[str]) -> str:
    i = next(i for i, (a, b) in enumerate(zip(have, want)) if a != b)
    return f"class {i} is {have[i]!r}, the checkpoint's is {want[i]!r}"


def evaluate_checkpoint(checkpoint, video_list, device="cpu", max_windows: int | None = None,
                        num_workers: int = 0, batch_windows: int = 8, with_diversity: bool = True,
                        progress: bool = False) -> dict:
    """The whole report for a checkpoint (folder or Hub id) on a VideoList with its classes."""
    loaded = load_checkpoint(checkpoint, device=device)
    clip_cfg = loaded.clip_cfg if max_windows is None else loaded.clip_cfg.replace(max_windows=max_windows)
    if list(video_list.class_names) != list(loaded.class_names):
        raise ClassMismatch("relabel the dataset with match_classes first")
    started = time.time()
    metrics = evaluate_model(loaded.model, EvalVideos(video_list, clip_cfg), device, loaded.class_names,
                             num_workers=num_workers, with_diversity=with_diversity,
                             batch_windows=batch_windows, progress=progress)
    seconds = time.time() - started
    cfg = loaded.model_cfg
    return {
        "checkpoint": str(loaded.path),
        "model": {"depth": cfg.depth, "base_width": cfg.base_width, "use_tda": cfg.use_tda, "use_sda": cfg.use_sda,
                  "multi_level_fusion": cfg.multi_level_fusion, "num_classes": cfg.num_classes},
        "clip": clip_cfg.to_dict(),
        **metrics,
        "confusion_axes": "rows: true class, columns: predicted class, both in class_names order",
        "stage_heads": _stage_heads(metrics),
        "diversity_spatial": metrics.get("diversity_spatial"),
        "diversity_temporal": metrics.get("diversity_temporal"),
        "similarity_spatial": metrics.get("similarity_spatial"),
        "similarity_temporal": metrics.get("similarity_temporal"),
        "attention_quality": metrics.get("attention_quality", {}),
        "listed": len(video_list.samples),
        "problems": list(getattr(video_list, "problems", [])),
        "seconds": seconds,
        "videos_per_s": metrics["videos"] / max(seconds, 1e-9),
    }


def _stage_heads(metrics: dict) -> dict:
    """{"stage 2": top-1, ..., "fused": top-1}: the paper's Fig. 4 in numbers."""
    heads = dict(zip(STAGES, metrics.get("stage_top1") or []))
    heads["fused"] = metrics["top1"]
    return heads


# ---------------------------------------------------------------------------- terminal summary
def summary_table(report: dict) -> str:
    """Plain-text tables: headline numbers, per class, per stage head, stage similarities."""
    names = report["class_names"]
    confusion = np.asarray(report["confusion"]) if report["confusion"] else np.zeros((len(names), len(names)), int)
    lines = [f"checkpoint {report['checkpoint']}",
             f"videos {report['videos']} evaluated, {len(report['skipped'])} unreadable (skipped)",
             f"top-1 {report['top1']:.4f}   top-5 {report['top5']:.4f}   "
             f"mean class accuracy {report['mean_class_accuracy']:.4f}", ""]
    width = max([len("class")] + [len(n) for n in names])
    lines.append(f"{'class':<{width}}  videos  accuracy  most confused with")
    for i, name in enumerate(names):
        support = int(confusion[i].sum())
        row = confusion[i].copy()
        row[i] = 0
        other = f"{names[int(row.argmax())]} ({int(row.max())})" if row.max() else ""
        acc = f"{report['per_class'][name]:.4f}" if name in report["per_class"] else "   -  "
        lines.append(f"{name:<{width}}  {support:>6}  {acc:>8}  {other}")
    lines += ["", "head      top-1"] + [f"{head:<8}  {acc:.4f}" for head, acc in report["stage_heads"].items()]
    last = (report.get("stage_shapes") or [[0, 0, 0]])[-1]
    for kind, cells in (("spatial", last[1] * last[2]), ("temporal", last[0])):
        matrix = report.get(f"similarity_{kind}")
        if matrix:
            trivial = " (stage 5's grid is one cell: 1 by construction; use larger clips)" if cells == 1 else ""
            lines += ["", f"{kind} attention, cosine similarity between stages "
                          f"(mean off-diagonal {report[f'diversity_{kind}']:.4f}){trivial}",
                      "        " + "  ".join(f"{s[-7:]:>7}" for s in STAGES)]
            lines += [f"{STAGES[i]:<8}" + "  ".join(f"{v:7.3f}" for v in row) for i, row in enumerate(matrix)]
    lines += quality_lines(report.get("attention_quality") or {})
    for item in report["skipped"]:
        lines.append(f"unreadable: {item['path']}: {item['error']}")
    return "\n".join(lines)


def quality_lines(quality: dict) -> list[str]:
    """The attention-quality table as text: one row per stage and kind, degenerate ones named."""
    if not quality:
        return []
    lines = ["", "attention quality (input dependence: 0 = the same map for every video; concentration: "
                 "1/cells = one-hot, 1 = uniform; lift: > 1 = looks at what moves)",
             "kind      stage    dependence  concentration  lift   verdict"]
    for kind, rows in quality.items():
        for stage, row in rows.items():
            cells = [("-" if row.get(k) is None else f"{row[k]:.3f}")
                     for k in ("input_dependence", "concentration", "motion_lift")]
            verdict = row.get("degenerate") or "ok"
            lines.append(f"{kind:<9} {stage:<8} {cells[0]:>10}  {cells[1]:>13}  {cells[2]:>5}  {verdict}")
    return lines


# ---------------------------------------------------------------------------- command line
DATA_FLAGS = ("data_layout", "data_root", "train_list", "val_list", "class_list", "splits_dir", "split",
              "val_fraction", "seed")


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    """The data flags of `python -m core.train` (see core.data.sources.read_dataset)."""
    parser.add_argument("--data-layout", choices=LAYOUTS, default="list")
    parser.add_argument("--data-root", "--root", dest="data_root", default="",
                        help="videos folder (list paths are relative to it; default: the list file's folder)")
    parser.add_argument("--list", dest="eval_list", help="list file to evaluate (list layout)")
    parser.add_argument("--train-list", help="list file, or Diving48 train JSON")
    parser.add_argument("--val-list", help="list file, or Diving48 test JSON")
    parser.add_argument("--class-list", help="class names file, or Diving48 vocab JSON")
    parser.add_argument("--splits-dir", help="UCF-101 / HMDB-51 split files")
    parser.add_argument("--split", type=int, default=1)
    parser.add_argument("--val-fraction", type=float, default=0.2, help="folder layout: held-out share")
    parser.add_argument("--seed", type=int, default=0, help="folder layout: the split's seed (as in training)")


def read_eval_list(args, subset: str = "val"):
    """(VideoList to evaluate, names_authoritative) from the data flags."""
    if args.data_layout == "list":
        path = args.eval_list or (args.val_list if subset == "val" else args.train_list)
        if not path:
            raise ValueError("the list layout needs --list FILE (or --val-list)")
        if not Path(path).is_file():
            raise FileNotFoundError(f"list file {path} does not exist")
        return read_list_file(path, args.data_root or None, class_list=args.class_list), bool(args.class_list)
    cfg = types.SimpleNamespace(**{name: getattr(args, name) for name in DATA_FLAGS})
    train_list, val_list = read_dataset(cfg)
    return (val_list if subset == "val" else train_list), True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="checkpoint folder or Hub repo id")
    add_data_flags(parser)
    parser.add_argument("--subset", choices=("val", "train"), default="val",
                        help="which side of a split layout to evaluate (default: the test/val side)")
    parser.add_argument("--json", dest="json_out", help="write the report here")
    parser.add_argument("--html", dest="html_out", help="write a self-contained plotly report here")
    parser.add_argument("--max-windows", type=int, help="cap on test windows per video (default: the checkpoint's)")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--batch-windows", type=int, default=8, help="windows per forward pass")
    parser.add_argument("--device", default="auto", help=f"{DEVICE_CHOICES} (auto: CUDA, then Apple MPS, then CPU)")
    parser.add_argument("--no-diversity", dest="diversity", action="store_false",
                        help="skip the attention-map similarities (faster)")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    return parser


def run(args) -> dict:
    device = resolve_device(args.device)
    folder = resolve_checkpoint(args.checkpoint)
    class_names = read_meta(folder)["class_names"]
    video_list, authoritative = read_eval_list(args, args.subset)
    for problem in getattr(video_list, "problems", []):
        log.warning("dataset: %s", problem)
    video_list = match_classes(video_list, class_names, authoritative)
    if not video_list.samples:
        raise ValueError("no videos to evaluate")
    report = evaluate_checkpoint(folder, video_list, device, args.max_windows, args.num_workers,
                                 args.batch_windows, args.diversity, args.progress)
    report["data"] = {k: getattr(args, k) for k in DATA_FLAGS + ("eval_list", "subset")}
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(report, indent=2))
    if args.html_out:
        write_html_report(report, args.html_out)
    return report


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        report = run(args)
    except (ClassMismatch, CheckpointError, ValueError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2
    print(summary_table(report))
    for label, path in (("json", args.json_out), ("html", args.html_out)):
        if path:
            print(f"{label} report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
