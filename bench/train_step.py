"""Training cost side by side: ST-MANet, the same model without the attention maps, and its
plain backbone, at the same clip config and batch, in the same run.

One step = forward in train mode, eq. 9 loss (`stmanet_loss`), backward, the optimizer step
(`core.train.make_optimizer`). Per setting three variants:
  backbone         the plain 3D ResNet of the same depth and width (`r3d*_baseline`)
  stmanet_no_maps  ST-MANet with the diversity losses off: TDA/SDA run without building maps
  stmanet          ST-MANet as trained, diversity losses on, so the attention maps are built
so stmanet / backbone is what the attention modules cost a training run, and stmanet /
stmanet_no_maps what the maps for L_s and L_t cost on top. Ratios are per round (the three run
back to back in every round), medians with their range.

Settings. CPU (fp32: core.train never trains in bf16 on CPU, torch 2.14.1's bf16 conv3d weight
gradients are wrong at small T): the shipped gesture recipe (R18 at width 16, 3-frame stem,
16x64x64, frame differences, batch 16) and ST-MANet-50 at 16x112x112, batch 8. CUDA: the
paper's ST-MANet-50 at 32x112x112, batch 32, bf16 autocast (the trainer's amp=auto).

Each variant runs in its own subprocess (this script with --child), in alternating rounds: one
warm-up step, then timed steps. Not in one process: after a step of a big config glibc's malloc
(its dynamic mmap threshold raised by the big frees) makes a small config's steps several
times slower (measured: 0.7 s -> 11.7 s for the gesture step), which would bench the
allocator, not the step. Peak memory: the growth of the child's VmHWM (peak resident set;
/proc/self/status) over its steps: activations, gradients, optimizer state. On CUDA:
torch.cuda.max_memory_allocated.

    python bench/train_step.py [--repeats 3] [--threads N] [--save]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

from common import REPO, base_parser, emit, interleave, machine, setup, summary

from core.model import build_model, config_by_name, stmanet_loss
from core.train import TrainConfig, make_optimizer

GESTURE = dict(num_classes=15, base_width=16, stem_temporal_kernel=3, input_mode="grey_diff",
               diversity_form="received", diversity_grid="first", diversity_margin=0.5, lambda_temporal=0.0,
               residual_gamma_init=0.1)  # the shipped recipe (tools/gesture_recipe.sh)
VARIANTS = ("backbone", "stmanet_no_maps", "stmanet")
TRAIN_RATIO_TARGET = 1.3  # ST-MANet clips/s >= 1/1.3 of its backbone's (issue 15)


def settings(quick: bool, cuda: bool) -> dict[str, dict]:
    """name -> {depth, model overrides, clip (T, H, W), batch, amp}."""
    if quick:
        return {"tiny": dict(depth=10, kw=dict(num_classes=15, base_width=8), clip=(8, 32, 32), batch=2)}
    if cuda:
        return {"r50_paper_amp": dict(depth=50, kw={}, clip=(32, 112, 112), batch=32, amp=True)}
    return {
        "gesture_r18": dict(depth=18, kw=GESTURE, clip=(16, 64, 64), batch=16),
        "r50_16f": dict(depth=50, kw={}, clip=(16, 112, 112), batch=8),
    }


def model_name(spec: dict, variant: str) -> str:
    return f"r3d{spec['depth']}_baseline" if variant == "backbone" else f"stmanet_r{spec['depth']}"


def variant_config(spec: dict, variant: str):
    cfg = config_by_name(model_name(spec, variant), **spec["kw"])
    if variant == "backbone":
        return cfg
    return cfg.replace(diversity_loss=False) if variant == "stmanet_no_maps" else cfg


def make_step(spec: dict, variant: str, device: str):
    """A no-argument function running one training step of `variant` at `spec`, and the model's config."""
    torch.manual_seed(0)
    cfg = variant_config(spec, variant)
    model = build_model(cfg).to(device).train()
    optimizer = make_optimizer(TrainConfig(optimizer="adamw", lr=1e-3), model)
    clips = torch.randn(spec["batch"], 3, *spec["clip"], device=device)
    labels = torch.randint(0, cfg.num_classes, (spec["batch"],), device=device)
    amp = spec.get("amp", False) and device == "cuda"

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
            out = model(clips)
        terms = stmanet_loss(out, labels, cfg)
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        optimizer.step()
        return float(terms.total.detach())

    return step, cfg


def _hwm_mb() -> float:
    """Peak resident set of this process in MB: VmHWM (reset by exec, unlike ru_maxrss, which a
    child inherits from the parent that forked it)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(name: str, quick: bool, steps: int) -> None:
    """Subprocess body for "setting/variant": one warm-up step, `steps` timed steps, and peak
    memory, as a JSON line."""
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    setting, variant = name.split("/")
    step, _ = make_step(settings(quick, cuda)[setting], variant, device)
    before = _hwm_mb()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    samples = interleave({name: step}, steps, warmup=1)[name]
    out = {"wall": samples["wall"], "cpu": samples["cpu"], "peak_rss_mb": round(_hwm_mb(), 1),
           "step_peak_rss_growth_mb": round(_hwm_mb() - before, 1)}
    if cuda:
        out["cuda_max_memory_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    print(json.dumps(out))


def run_child(name: str, quick: bool, threads: int | None, steps: int, os_malloc: bool = False) -> dict:
    cmd = [sys.executable, str(REPO / "bench" / "train_step.py"), "--child", name, "--child-steps", str(steps)]
    cmd += ["--quick"] if quick else []
    cmd += ["--os-malloc"] if os_malloc else []
    cmd += ["--threads", str(threads)] if threads else []
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{name}: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def per_round_ratio(a: list[dict], b: list[dict], key: str = "wall") -> dict:
    """a's step time over b's, one ratio per round (each round's median step), median and range."""
    ratios = sorted(statistics.median(x[key]) / statistics.median(y[key]) for x, y in zip(a, b))
    return {"median": round(statistics.median(ratios), 3), "range": [round(ratios[0], 3), round(ratios[-1], 3)],
            "rounds": len(ratios)}


def main(argv=None) -> dict:
    parser = base_parser(__doc__)
    parser.add_argument("--child", default=None, help=argparse_hidden())
    parser.add_argument("--child-steps", type=int, default=2, help=argparse_hidden())
    parser.add_argument("--steps", type=int, default=None, help="timed steps per subprocess (default 3, 1 with --quick)")
    parser.add_argument("--settings", nargs="+", default=None, help="only these settings (default: all)")
    args = parser.parse_args(argv)
    setup(args)
    if args.child:
        child(args.child, args.quick, args.child_steps)
        return {}
    load, start = os.getloadavg(), time.perf_counter()
    cuda = torch.cuda.is_available()
    repeats = args.repeats or (1 if args.quick else 3)
    steps = args.steps or (1 if args.quick else 3)
    specs = {k: v for k, v in settings(args.quick, cuda).items() if args.settings is None or k in args.settings}
    if not specs:
        raise SystemExit(f"no such setting; known: {sorted(settings(args.quick, cuda))}")
    rows, comparisons = [], []
    for setting, spec in specs.items():
        got = {v: [] for v in VARIANTS}
        for r in range(repeats):
            for variant in VARIANTS if r % 2 == 0 else reversed(VARIANTS):
                got[variant].append(run_child(f"{setting}/{variant}", args.quick, args.threads, steps, args.os_malloc))
        for variant in VARIANTS:
            wall = [w for g in got[variant] for w in g["wall"]]
            cpu = [c for g in got[variant] for c in g["cpu"]]
            cfg = variant_config(spec, variant)
            rows.append({
                "setting": setting, "variant": variant, "model": model_name(spec, variant), "diversity_loss": cfg.diversity_active,
                "model_overrides": spec["kw"], "clip": list(spec["clip"]), "batch": spec["batch"],
                "precision": "bf16 autocast" if spec.get("amp") and cuda else "fp32",
                "step_wall_s": summary(wall), "step_cpu_s": summary(cpu),
                "clips_per_s_wall": round(spec["batch"] / statistics.median(wall), 2),
                "clips_per_cpu_s": round(spec["batch"] / statistics.median(cpu), 2),
                "memory": {k: max(g[k] for g in got[variant]) for k in got[variant][0] if k not in ("wall", "cpu")},
            })
        time_ratio = per_round_ratio(got["stmanet"], got["backbone"])
        mem = {v: max(g.get("cuda_max_memory_allocated_mb", g["step_peak_rss_growth_mb"]) for g in got[v]) for v in VARIANTS}
        comparisons.append({
            "setting": setting,
            "stmanet_over_backbone_time": time_ratio,
            "stmanet_over_backbone_time_cpu": per_round_ratio(got["stmanet"], got["backbone"], "cpu"),
            "stmanet_clips_per_s_fraction_of_backbone": round(1 / time_ratio["median"], 3),
            "attention_maps_cost": per_round_ratio(got["stmanet"], got["stmanet_no_maps"]),
            "attention_modules_cost": per_round_ratio(got["stmanet_no_maps"], got["backbone"]),
            "peak_memory_mb": mem,
            "stmanet_over_backbone_memory": round(mem["stmanet"] / max(mem["backbone"], 1e-9), 3),
            "target": {"stmanet_clips_per_s_at_least": f"1/{TRAIN_RATIO_TARGET} of the backbone's",
                       "met": time_ratio["median"] <= TRAIN_RATIO_TARGET},
        })
    result = {
        "script": "train_step",
        "quick": args.quick,
        "device": "cuda" if cuda else "cpu",
        "repeats": repeats,
        "steps_per_subprocess": steps,
        "steps": rows,
        "comparisons": comparisons,
        "notes": ["random data and weights; a step is forward + eq. 9 loss + backward + AdamW, as core.train; "
                  "data loading excluded (see data_loading.py)",
                  "each variant in its own subprocesses, the three back to back in every round (order alternating); "
                  "one warm-up step per subprocess; time ratios are of per-round median step times (wall)"],
        "seconds": round(time.perf_counter() - start, 1),
        "machine": machine(load),
    }
    emit(result, "train_step", args.save)
    return result


def argparse_hidden():
    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
