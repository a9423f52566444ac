"""Does the data loader keep the model fed? Decoded training clips/s of VideoClipDataset through
a DataLoader (num_workers 0, 1, 2; with and without FrameCache), against the training step's
clips/s of the same clip config, timed in the same interleaved rounds.

Videos: the first --videos files of the shared gesture set (640x480 AVI, the CPU run's data),
else generated ones. Clips: the gesture run's recipe (32 frames, stride 1, 112x112, motion crop,
crop scale 0.7-1, flips); cache frames at max side 384 (its --cache-max-side) in a temporary
folder (never the repo's cache/). A fresh DataLoader per measurement, as core.train builds one
per epoch, so worker start-up is counted. The loader is timed alone: in training its workers run
beside the model's step, on the same 2 cores.

    python bench/data_loading.py [--repeats 3] [--threads N] [--save]
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

from common import REPO, base_parser, emit, interleave, machine, setup, summary
from train_step import make_step

from core.data.cache import FrameCache
from core.data.clips import ClipConfig
from core.data.dataset import VideoClipDataset
from core.data.samples import Sample, VideoList

GESTURES = REPO.parent / "shared" / "data" / "gestures"


def videos(count: int, workdir: Path, quick: bool) -> tuple[VideoList, str]:
    files = sorted(GESTURES.glob("S*/*.avi"))[:count] if GESTURES.is_dir() and not quick else []
    source = "shared gesture set"
    if not files:
        source = "generated MJPG"
        size, frames = ((160, 120), 20) if quick else ((640, 480), 80)
        for k in range(count):
            path = workdir / f"video_{k}.avi"
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, size)
            rng = np.random.default_rng(k)
            for i in range(frames):
                frame = rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8)
                x = (i * 7) % (size[0] - 40)
                frame[size[1] // 3 : size[1] // 3 + 40, x : x + 40] = 220
                writer.write(frame)
            writer.release()
            files.append(path)
    samples = [Sample(Path(f), k % 2) for k, f in enumerate(files)]
    return VideoList(samples, ["a", "b"]), source


def loader_fn(dataset: VideoClipDataset, workers: int, clips: int, batch: int):
    """One pass over `clips` clips through a fresh DataLoader, as an epoch of core.train."""
    indices = list(range(clips))

    def run():
        loader = DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch, num_workers=workers,
                            shuffle=False, persistent_workers=False)
        for _ in loader:
            pass

    return run


def main(argv=None) -> dict:
    parser = base_parser(__doc__)
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--clips", type=int, default=24, help="clips per loader measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    setup(args)
    load, start = os.getloadavg(), time.perf_counter()
    repeats = args.repeats or (1 if args.quick else 3)
    if args.quick:
        args.videos, args.clips, args.workers = 4, 4, [0, 1]
        clip_cfg = ClipConfig(num_frames=8, stride=1, height=32, width=32, motion_crop=True, crop_scale=(0.7, 1.0))
    else:
        clip_cfg = ClipConfig(num_frames=32, stride=1, height=112, width=112, motion_crop=True, crop_scale=(0.7, 1.0))
    batch = 2 if args.quick else 8
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        video_list, source = videos(args.videos, workdir, args.quick)
        cache = FrameCache(workdir / "cache", max_side=384)
        tick = time.perf_counter()
        cache.build(video_list, workers=2, progress=False)
        build_s = time.perf_counter() - tick
        datasets = {
            "decode": VideoClipDataset(video_list, clip_cfg, train=True, seed=0),
            "cache": VideoClipDataset(video_list, clip_cfg, train=True, seed=0, frame_cache=cache),
        }
        clips = max(args.clips, batch)
        fns = {f"{kind}|{w}": loader_fn(ds, w, clips, batch) for kind, ds in datasets.items() for w in args.workers}
        spec = (dict(depth=10, kw=dict(num_classes=2, base_width=8), clip=(8, 32, 32), batch=batch)
                if args.quick else
                dict(depth=18, kw=dict(num_classes=15, base_width=16, stem_temporal_kernel=3),
                     clip=(32, 112, 112), batch=batch))
        fns["train_step"], _ = make_step(spec, "stmanet", "cuda" if torch.cuda.is_available() else "cpu")
        samples = interleave(fns, repeats)
    step = samples.pop("train_step")
    model_rate = batch / statistics.median(step["wall"])
    rows = []
    for key, s in samples.items():
        kind, workers = key.split("|")
        rate = clips / statistics.median(s["wall"])
        rows.append({
            "source": "frame cache" if kind == "cache" else "decode each clip", "num_workers": int(workers),
            "wall_s": summary(s["wall"]), "clips_per_s": round(rate, 2),
            "clips_per_s_per_worker": round(rate / max(1, int(workers)), 2),
            "keeps_model_fed": rate >= model_rate,
        })
    result = {
        "script": "data_loading",
        "quick": args.quick,
        "videos": {"source": source, "count": len(video_list)},
        "clip": clip_cfg.to_dict(),
        "clips_per_measurement": clips,
        "batch": batch,
        "repeats": repeats,
        "cache_build_s": round(build_s, 2),
        "loader": rows,
        "model_train_step": {"config": f"stmanet_r{spec['depth']}", "overrides": spec["kw"], "clip": list(spec["clip"]),
                             "step_wall_s": summary(step["wall"]), "clips_per_s": round(model_rate, 2)},
        "notes": ["a fresh DataLoader per measurement (worker start-up counted, as per epoch in core.train); "
                  "num_workers=0 decodes in the main process; loader and model were timed apart, in training "
                  "they share the CPUs"],
        "seconds": round(time.perf_counter() - start, 1),
        "machine": machine(load),
    }
    emit(result, "data_loading", args.save)
    return result


if __name__ == "__main__":
    main()
