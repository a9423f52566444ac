"""Table 4 of the paper with one command: train and evaluate the six variants (plain 3D ResNet,
+TDA, +SDA, +TDA+SDA, +MF, full ST-MANet) on one dataset with one recipe, then write the table.

    python -m core.ablation --data-layout list --data-root DIR --train-list train.txt --val-list val.txt \
        --depth 18 --base-width 8 --num-frames 16 --height 96 --width 96 --epochs 30 --out runs/ablation

Every flag of `python -m core.train` applies to all six runs, except --model and --run-dir (set
here: one run folder per variant, `<out>/<variant name>/`) and --resume (always on). A killed
ablation run again with the same command continues where it stopped: finished variants are not
retrained (their run resumes at the end) and their evaluation is reused while the checkpoint is
the same save (`eval.json` records the checkpoint's save_id).

Each variant is evaluated on the validation/test side of the data with `core.evaluate` (the
checkpoint's own clip config). GFLOPs are one clip's forward at the run's clip size, counted by
torch.utils.flop_counter on the meta device (no memory, no time); params exclude the per-stage
analysis heads, which the paper's models do not have. Writes `<out>/table.md` and `table.json`
after every variant, so a partial ablation still has a partial table.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from .checkpoint import CONFIG, read_meta
from .data.sources import read_dataset
from .evaluate import evaluate_checkpoint
from .model import build_model, config_by_name, variant_names
from .train import TrainConfig, build_parser, config_from_args, pick_device, train

log = logging.getLogger(__name__)

COLUMNS = ("variant", "TDA", "SDA", "MF", "top1", "top5", "mean class acc", "GFLOPs", "params (M)")


def model_cost(model_cfg, clip_cfg) -> tuple[float, float]:
    """(GFLOPs of one clip's forward, params in millions without the stage heads)."""
    with torch.device("meta"):
        model = build_model(model_cfg).eval()
        clip = torch.empty(1, 3, clip_cfg.num_frames, clip_cfg.height, clip_cfg.width)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(clip)
    params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("stage_heads."))
    return counter.get_total_flops() / 1e9, params / 1e6


def evaluate_run(run_dir: Path, val_list, device, num_workers: int) -> dict:
    """The evaluation report of a run's last checkpoint, reused from eval.json when that file was
    written for the same save."""
    ckpt, cached = run_dir / "checkpoint", run_dir / "eval.json"
    save_id = read_meta(ckpt).get("save_id")
    if cached.exists():
        report = json.loads(cached.read_text())
        if report.get("save_id") == save_id:
            return report
    report = evaluate_checkpoint(ckpt, val_list, device=device, num_workers=num_workers)
    report["save_id"] = save_id
    cached.write_text(json.dumps(report, indent=2))
    return report


def run_variant(base: TrainConfig, name: str, out: Path, val_list) -> dict:
    """Train (or finish training) one variant, evaluate it, and return its table row."""
    cfg = dataclasses.replace(base, model=name, run_dir=str(out / name), resume=True)
    widths = {"base_width": base.base_width} if base.base_width else {}
    model_cfg = config_by_name(name, num_classes=len(val_list.class_names),
                               stem_temporal_kernel=base.stem_temporal_kernel, **widths)
    gflops, params = model_cost(model_cfg, cfg.clip_config())
    row = {"variant": name, "TDA": model_cfg.use_tda, "SDA": model_cfg.use_sda, "MF": model_cfg.multi_level_fusion,
           "GFLOPs": gflops, "params (M)": params, "run_dir": cfg.run_dir}
    log.info("ablation: %s (%.2f GFLOPs, %.2f M params)", name, gflops, params)
    result = train(cfg)
    if result.error or result.stopped or not (Path(cfg.run_dir) / "checkpoint" / CONFIG).exists():
        return {**row, "error": result.error or "stopped before a checkpoint was written"}
    if not _is_main():
        return row  # under torchrun, rank 0 evaluates and writes the table
    report = evaluate_run(Path(cfg.run_dir), val_list, pick_device(cfg.device), cfg.num_workers)
    return {**row, "top1": report["top1"], "top5": report["top5"], "mean class acc": report["mean_class_accuracy"],
            "stage_top1": report["stage_top1"], "diversity_spatial": report["diversity_spatial"],
            "diversity_temporal": report["diversity_temporal"], "videos": report["videos"],
            "epochs": len(result.history)}


def _is_main() -> bool:
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


def markdown_table(rows: list[dict], title: str) -> str:
    def cell(row, column):
        value = row.get(column)
        if column in ("TDA", "SDA", "MF"):
            return "✓" if value else "–"
        if value is None:
            return "failed" if column == "top1" and row.get("error") else ""
        if column in ("top1", "top5", "mean class acc"):
            return f"{100 * value:.1f}"
        if column in ("GFLOPs", "params (M)"):
            return f"{value:.3g}" if value < 1 else f"{value:.2f}"
        return str(value)

    lines = [f"# {title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r, c) for c in COLUMNS) + " |" for r in rows]
    lines += ["", "top1, top5, mean class acc in %, on the validation/test videos; GFLOPs per clip; "
                  "params without the per-stage analysis heads."]
    lines += [f"- {r['variant']}: {r['error']}" for r in rows if r.get("error")]
    return "\n".join(lines) + "\n"


def write_table(rows: list[dict], out: Path, title: str, recipe: dict) -> None:
    (out / "table.md").write_text(markdown_table(rows, title), encoding="utf-8")
    (out / "table.json").write_text(json.dumps({"title": title, "recipe": recipe, "rows": rows}, indent=2))


def ablation(base: TrainConfig, depth: int, out, variants: list[str] | None = None) -> list[dict]:
    """Train and evaluate the Table 4 variants of `depth` (or the named subset) under `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = variant_names(depth)
    unknown = sorted(set(variants or []) - set(names))
    if unknown:
        raise ValueError(f"unknown variants {unknown}; the depth-{depth} variants are {', '.join(names)}")
    _, val_list = read_dataset(base)
    if not val_list.samples:
        raise ValueError("the ablation evaluates on validation videos: give --val-list (or the folder layout's "
                         "--val-fraction, or a split layout)")
    title = f"Table 4 ablation, 3D ResNet-{depth} (base width {base.base_width or 64}), {base.data_source or base.data_layout + ':' + base.data_root}"
    recipe = {k: v for k, v in base.to_dict().items() if k not in ("model", "run_dir", "resume")}
    rows = []
    for name in [n for n in names if not variants or n in variants]:
        rows.append(run_variant(base, name, out, val_list))
        if _is_main():
            write_table(rows, out, title, recipe)
    return rows


def build_ablation_parser() -> argparse.ArgumentParser:
    parser = build_parser(TrainConfig, __doc__)
    parser.add_argument("--depth", type=int, default=18, help="backbone depth of all six variants (10, 18, 34, 50, 101)")
    parser.add_argument("--out", required=True, help="folder for the six runs and the table")
    parser.add_argument("--variants", nargs="*", help="only these variant names (default: all six)")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parser = build_ablation_parser()
    args = parser.parse_args(argv)
    defaults = TrainConfig()
    for name in ("model", "run_dir"):
        if getattr(args, name) != getattr(defaults, name):
            parser.error(f"--{name.replace('_', '-')} is set by the ablation for each variant; use --out and --variants")
    values = vars(args)
    depth, out, variants = values.pop("depth"), values.pop("out"), values.pop("variants")
    base = config_from_args(argparse.Namespace(**values))
    try:
        rows = ablation(base, depth, out, variants)
    except (ValueError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if _is_main():
        print((Path(out) / "table.md").read_text(encoding="utf-8"))
    return 1 if any(r.get("error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
