"""One GPU check, one JSON: does the project run, how fast, and does it learn on this machine.

    python bench/gpu_check.py [--data ../shared/data/gestures] [--out gpu_check.json]
    python bench/gpu_check.py --quick          # the same sections, tiny, on whatever device (the tests' form)

Sections, all on the device `core.capability.resolve_device("auto")` picks (CUDA, MPS, CPU):
1. inference: ST-MANet-50 and its backbone (optimized copies, `optimize_for_inference`), batch 1
   and 8, 32x112x112, fp32 and bf16 autocast where `core.capability` says the device has it;
   per-clip latency and ST-MANet / backbone time, paired per round (bench/latency.py's forward);
2. training step: the paper's batch 32 at 32x112x112 with bf16 autocast on CUDA (the trainer's
   amp=auto; fp32 elsewhere), ST-MANet-50 and its backbone (bench/train_step.py's step): clips/s
   and peak memory (torch.cuda.max_memory_allocated, per model, from a reset);
3. learning: a short real training run through `core.train.train`, on the gesture clips (S1-S6
   train, S7-S8 held out, the shipped recipe at GPU width) when --data (or ../shared/data/gestures)
   is there, else on generated motion-rhythm videos. It must learn: the mean training loss of
   the last epoch below the first's, and held-out top-1 at least twice chance (or chance + 25
   points, whichever is lower). The exit code is 1 when it did not.

Budget: under 8 minutes on one CUDA GPU (--epochs and --repeats scale it down further).
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import REPO, base_parser, emit, interleave, machine, paired_ratio, precisions, setup
from latency import forward_fn
from train_step import make_step

from core.capability import resolve_device
from core.data.gestures import write_gesture_lists
from core.data.synthetic import write_rhythm_set
from core.model import build_model, config_by_name
from core.model.inference import optimize_for_inference
from core.train import TrainConfig, train

GESTURES = REPO.parent / "shared" / "data" / "gestures"
MODELS = ("stmanet_r50", "r3d50_baseline")


def inference(device: torch.device, quick: bool, repeats: int) -> dict:
    clip_shape = (3, 8, 32, 32) if quick else (3, 32, 112, 112)
    shrink = dict(depth=10, base_width=8) if quick else {}
    models = {}
    for name in MODELS:
        torch.manual_seed(0)
        models[name] = optimize_for_inference(build_model(config_by_name(name).replace(**shrink)).eval().to(device))
    runnable, skipped = precisions(device.type)
    rows, ratios = [], []
    for batch in (1, 8):
        clip = torch.randn(batch, *clip_shape, device=device)
        fns = {(m, p): forward_fn(models[m], clip, p) for m in MODELS for p in runnable}
        samples = interleave(fns, repeats)
        for (m, p), s in samples.items():
            rows.append({"model": m, "batch": batch, "precision": p,
                         "per_clip_ms": round(1000 * statistics.median(s["wall"]) / batch, 3)})
        for p in runnable:
            ratios.append({"batch": batch, "precision": p,
                           "time_ratio": paired_ratio(samples[(MODELS[0], p)]["wall"], samples[(MODELS[1], p)]["wall"])})
    return {"clip": list(clip_shape[1:]), "rows": rows, "stmanet_over_backbone": ratios,
            "skipped": [{"precision": p, "skipped": why} for p, why in skipped.items()]}


def training_step(device: torch.device, quick: bool, repeats: int) -> dict:
    spec = (dict(depth=10, kw=dict(base_width=8), clip=(8, 32, 32), batch=2) if quick
            else dict(depth=50, kw={}, clip=(32, 112, 112), batch=32, amp=True))
    out = {"clip": list(spec["clip"]), "batch": spec["batch"],
           "precision": "bf16 autocast" if spec.get("amp") and device.type == "cuda" else "fp32"}
    steps = {}
    for variant in ("backbone", "stmanet"):
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        steps[variant], _ = make_step(spec, variant, device.type)
        steps[variant]()  # warm-up, and the step whose peak memory is read
        if device.type == "cuda":
            out[f"{variant}_peak_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    samples = interleave(steps, repeats, warmup=0)
    for variant, s in samples.items():
        out[f"{variant}_clips_per_s"] = round(spec["batch"] / statistics.median(s["wall"]), 2)
    out["stmanet_over_backbone_time"] = paired_ratio(samples["stmanet"]["wall"], samples["backbone"]["wall"])
    return out


def learning_run(device: torch.device, quick: bool, data: Path | None, epochs: int | None, workdir: Path) -> dict:
    """A short real training run; `learned` says whether it did."""
    if data is not None and not quick:
        lists = workdir / "lists"
        write_gesture_lists(data, lists, tuple(f"S{i}" for i in range(1, 7)), ("S7", "S8"))
        cfg = TrainConfig(
            run_dir=str(workdir / "run"), data_layout="list", data_root=str(data), train_list=str(lists / "train.txt"),
            val_list=str(lists / "val.txt"), class_list=str(lists / "classes.txt"), model="stmanet_r18",
            base_width=32, stem_temporal_kernel=3, num_frames=16, sampling="segments", height=64, width=64,
            motion_crop=True, crop_scale=(0.7, 1.0), flip_label_swap=(("left", "right"),), batch_size=16,
            optimizer="adamw", lr=2e-3, weight_decay=0.05, lr_schedule="cosine", warmup_epochs=1,
            label_smoothing=0.1, dropout=0.3, max_val_windows=2, input_mode="grey_diff", diversity_form="received",
            diversity_grid="first", diversity_margin=0.5, lambda_temporal=0.0, diversity_warmup_epochs=2,
            residual_gamma_init=0.1, epochs=epochs or 15, val_every=epochs or 15, num_workers=min(8, os.cpu_count() or 1),
            frame_cache=str(workdir / "cache"), cache_max_side=384, device=str(device), show_progress=False)
        source = f"gestures {data}: S1-S6 train, S7-S8 held out"
    else:
        root = write_rhythm_set(workdir / "rhythm", 12, 6)
        cfg = TrainConfig(
            run_dir=str(workdir / "run"), data_layout="list", data_root=str(root), train_list=str(root / "train.txt"),
            val_list=str(root / "val.txt"), class_list=str(root / "classes.txt"), model="stmanet_r10", base_width=4,
            stem_temporal_kernel=3, num_frames=8, stride=1, height=32, width=32, crop_scale=(0.8, 1.0),
            max_val_windows=3, epochs=epochs or 8, batch_size=4, optimizer="adamw", lr=3e-3, dropout=0.0,
            lr_schedule="cosine", val_every=epochs or 8, num_workers=0, show_progress=False, seed=3, device=str(device))
        source = "generated motion-rhythm videos (2 classes that differ only in speed)"
    losses: dict[int, list[float]] = {}

    def on_event(event: dict) -> None:
        if event.get("event") == "step":
            losses.setdefault(event["epoch"], []).append(event["loss"])

    start = time.perf_counter()
    result = train(cfg, callback=on_event)
    seconds = time.perf_counter() - start
    epoch_loss = [round(statistics.mean(losses[e]), 4) for e in sorted(losses)]
    final = result.history[-1] if result.history else {}
    classes = len((Path(cfg.class_list)).read_text().split())
    chance = 1 / classes
    bar = min(2 * chance, chance + 0.25)
    val = final.get("val_acc")
    learned = bool(result.error is None and len(epoch_loss) > 1 and epoch_loss[-1] < epoch_loss[0]
                   and val is not None and val >= bar)
    return {"data": source, "model": cfg.model, "epochs": cfg.epochs, "seconds": round(seconds, 1),
            "epoch_mean_loss": epoch_loss, "held_out_top1": val, "chance": round(chance, 4),
            "top1_needed": round(bar, 4), "learned": learned, "error": result.error}


def main(argv=None) -> dict:
    parser = base_parser(__doc__)
    parser.add_argument("--data", default=None, help=f"gesture set root (default: {GESTURES} when present)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of the learning run (default 15; quick 8)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU) or a device name")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    setup(args)
    load, start = os.getloadavg(), time.perf_counter()
    device = resolve_device(args.device)
    repeats = args.repeats or (1 if args.quick else 5)
    data = Path(args.data) if args.data else (GESTURES if GESTURES.is_dir() else None)
    with tempfile.TemporaryDirectory() as tmp:
        result = {
            "script": "gpu_check",
            "quick": args.quick,
            "device": str(device),
            "inference": inference(device, args.quick, repeats),
            "training_step": training_step(device, args.quick, max(2, repeats // 2)),
            "learning": learning_run(device, args.quick, data, args.epochs, Path(tmp)),
        }
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["machine"] = machine(load)
    emit(result, "gpu_check", args.save)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["learning"]["learned"] else 1)
