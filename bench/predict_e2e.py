"""Upload to answer: a 10 s video through core.predict.Predictor to the top-k, with and without
the attention maps the app shows, in fp32 and bf16, with the plain model (optimize=False) and
the optimized inference copy (the default); where the time goes (prediction.timings: decode,
preprocess, model, maps). With more than one torch thread, the optimized predictor also runs
with threads=1 in the same rounds. Also the preprocessing alone (core.data.clips.test_batch on
every window: crops, resizes, normalisation by table lookup). Variants are timed in interleaved rounds.

Checkpoint: --checkpoint DIR, else the app's default (STMANET_CHECKPOINT, else
checkpoints/stmanet-r18-gestures as app/config.py names it), else the first folder in checkpoints/, else a
freshly saved random model of the gesture config (stmanet_r18, 15 classes, base width 16, stem
temporal kernel 3; clips of 32 frames, stride 1, motion crop). Video: --video PATH, else the
shared 10 s MMAction2 demo clip (340x256, 28 fps), else a generated 10 s 320x240 MJPG.

    python bench/predict_e2e.py [--repeats 3] [--threads N] [--save]
"""
from __future__ import annotations

import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from common import REPO, base_parser, emit, interleave, machine, paired_ratio, precisions, setup, summary

from core.checkpoint import is_complete, load_checkpoint, save_checkpoint
from core.data.clips import ClipConfig, decode_max_side, test_batch, test_windows
from core.data.video import probe_video, read_frames
from core.model import build_model, config_by_name
from core.predict import Predictor

DEMO = REPO.parent / "shared" / "data" / "clips" / "mmaction2_demo_demo.mp4"
GESTURE_CLASSES = ["attention", "back", "come", "continue", "greeting", "left", "no", "random", "right",
                   "shrug", "slowdown", "static", "stop", "turnback", "yes"]


def make_video(path: Path, seconds: float, width: int, height: int, fps: float = 25.0) -> Path:
    """A textured background with a bright figure moving back and forth (something for the
    motion crop to find), MJPG."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    rng = np.random.default_rng(0)
    background = rng.integers(40, 90, (height, width, 3), dtype=np.uint8)
    side = max(8, height // 4)
    for i in range(int(seconds * fps)):
        frame = background.copy()
        x = int((width - side) * (0.5 + 0.5 * np.sin(i / 6)))
        frame[height // 3 : height // 3 + side, x : x + side] = (220, 200, 180)
        writer.write(frame)
    writer.release()
    return path


def app_default_checkpoint() -> Path | None:
    """The checkpoint the app starts on, as app/config.py resolves it (STMANET_CHECKPOINT, else
    checkpoints/<DEFAULT_CHECKPOINT>), read without importing the app (gradio takes ~10 s)."""
    if os.environ.get("STMANET_CHECKPOINT"):
        return Path(os.environ["STMANET_CHECKPOINT"])
    match = re.search(r'^DEFAULT_CHECKPOINT = "([^"]+)"', (REPO / "app" / "config.py").read_text(), re.M)
    folder = REPO / "checkpoints" / (match.group(1) if match else "")
    return folder if match and is_complete(folder) else None


def pick_checkpoint(arg: str | None, workdir: Path, quick: bool) -> tuple[Path, str]:
    """(folder, where it came from)."""
    if arg:
        return Path(arg), "given"
    default = None if quick else app_default_checkpoint()
    if default is not None:
        return default, f"the app's default ({default.relative_to(REPO) if default.is_relative_to(REPO) else default})"
    shipped = sorted(p for p in (REPO / "checkpoints").glob("*") if is_complete(p))
    if shipped and not quick:
        return shipped[0], "first folder in checkpoints/"
    torch.manual_seed(0)
    if quick:
        cfg = config_by_name("stmanet_r10", num_classes=15, base_width=8, stem_temporal_kernel=3)
        clip = ClipConfig(num_frames=8, stride=1, height=64, width=64, motion_crop=True)
    else:
        cfg = config_by_name("stmanet_r18", num_classes=15, base_width=16, stem_temporal_kernel=3)
        clip = ClipConfig(num_frames=32, stride=1, motion_crop=True)
    folder = save_checkpoint(workdir / "gesture_random", build_model(cfg).eval(), clip, GESTURE_CLASSES,
                             data_source="random init (benchmark)")
    return folder, "random weights, gesture config (no checkpoint in checkpoints/)"


def preprocess_alone(video: Path, clip_cfg: ClipConfig, repeats: int) -> dict:
    """The batch of all windows through core.data.clips.test_batch: its time alone."""
    info = probe_video(video)
    windows = test_windows(info.num_frames, clip_cfg)
    frames = read_frames(video, np.concatenate(windows), max_side=decode_max_side(info.width, info.height, clip_cfg, False))
    t = clip_cfg.num_frames
    rows = [np.arange(k * t, (k + 1) * t) for k in range(len(windows))]
    samples = interleave({"test_batch": lambda: test_batch(frames, rows, clip_cfg)}, repeats)
    return {"windows": len(windows), "test_batch_wall_s": summary(samples["test_batch"]["wall"]),
            "test_batch_cpu_s": summary(samples["test_batch"]["cpu"])}


def main(argv=None) -> dict:
    parser = base_parser(__doc__)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--video", default=None, help="a video file, or 'generate'")
    parser.add_argument("--topk", type=int, default=5)
    args = parser.parse_args(argv)
    setup(args)
    load, start = os.getloadavg(), time.perf_counter()
    repeats = args.repeats or (1 if args.quick else 3)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.video and args.video != "generate":
            video, video_source = Path(args.video), "given"
        elif DEMO.is_file() and not args.quick and args.video != "generate":
            video, video_source = DEMO, "shared MMAction2 demo clip"
        else:
            seconds, (w, h) = (2, (160, 120)) if args.quick else (10, (320, 240))
            video, video_source = make_video(workdir / "generated.avi", seconds, w, h), "generated MJPG"
        folder, ckpt_source = pick_checkpoint(args.checkpoint, workdir, args.quick)
        loaded = load_checkpoint(folder)
        info = probe_video(video)
        variants = {"eager": dict(optimize=False), "optimized": dict(optimize=True)}
        if torch.get_num_threads() > 1:  # the same predictor with one intra-op thread, side by side
            variants["optimized-1thread"] = dict(optimize=True, threads=1)
        runnable, skipped = precisions("cpu")  # bf16 only where core.capability says this CPU has it
        predictors = {f"{v}|{p}": Predictor(loaded, device="cpu", precision=p, **kw)
                      for v, kw in variants.items() for p in runnable}
        runs, last = {}, {}
        for name, pred in predictors.items():
            for maps in (False, True):
                key = f"{name}|{'maps' if maps else 'no_maps'}"

                def call(pred=pred, maps=maps, key=key):
                    last[key] = pred.predict(video, topk=args.topk, with_attention=maps)

                runs[key] = call
        timings = {k: [] for k in runs}

        def recorded(key):
            def run():
                runs[key]()
                timings[key].append(last[key].timings)
            return run

        samples = interleave({k: recorded(k) for k in runs}, repeats)
        rows = []
        for key, s in samples.items():
            variant, precision, maps = key.split("|")
            parts = {part: round(statistics.median(t[part] for t in timings[key][-repeats:]), 4)
                     for part in ("decode", "preprocess", "model", "maps", "total")}
            rows.append({"variant": variant, "precision": precision, "attention_maps": maps == "maps",
                         "wall_s": summary(s["wall"]), "cpu_s": summary(s["cpu"]), "timings_median_s": parts})
        fp32, bf16 = last["optimized|fp32|no_maps"], last.get("optimized|bf16|no_maps")
        clip_cfg = loaded.clip_cfg
        result = {
            "script": "predict_e2e",
            "quick": args.quick,
            "video": {"source": video_source, "path": str(video), "seconds": round(info.duration_s, 2),
                      "frames": info.num_frames, "size": [info.width, info.height],
                      "windows": len(fp32.window_times)},
            "checkpoint": {"source": ckpt_source, "path": str(folder), "model": loaded.model_cfg.to_dict(),
                           "clip": clip_cfg.to_dict()},
            "repeats": repeats,
            "runs": rows,
            "speedup_optimized_over_eager": [
                {"variant": v, "precision": p, "attention_maps": m == "maps",
                 "wall": paired_ratio(samples[f"eager|{p}|{m}"]["wall"], samples[f"{v}|{p}|{m}"]["wall"]),
                 "cpu": paired_ratio(samples[f"eager|{p}|{m}"]["cpu"], samples[f"{v}|{p}|{m}"]["cpu"])}
                for v in variants if v != "eager" for p in runnable for m in ("no_maps", "maps")
            ],
            "skipped": [{"precision": p, "skipped": why} for p, why in skipped.items()],
            "bf16_vs_fp32": {"skipped": skipped["bf16"]} if bf16 is None else {
                "same_top1": fp32.topk[0][0] == bf16.topk[0][0],
                "same_topk_labels": [n for n, _ in fp32.topk] == [n for n, _ in bf16.topk],
                "topk_set_overlap": len({n for n, _ in fp32.topk} & {n for n, _ in bf16.topk}),
                "max_abs_prob_diff": float(f"{np.abs(fp32.probs - bf16.probs).max():.3g}"),
                "window_top1_agreement": round(float((fp32.window_probs.argmax(1) == bf16.window_probs.argmax(1)).mean()), 3),
            },
            "preprocess": preprocess_alone(video, clip_cfg, repeats),
        }
    target = {}
    for r in rows:
        if r["variant"].startswith("optimized") and r["attention_maps"]:
            median = r["wall_s"]["median"]
            target[f"{r['variant']}_{r['precision']}"] = {"wall_s": median, "cpu_s": r["cpu_s"]["median"],
                                                          "met": median < 2.0}
    result["target_10s_video_with_maps_under_2s"] = target
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["machine"] = machine(load)
    emit(result, "predict_e2e", args.save)
    return result


if __name__ == "__main__":
    main()
