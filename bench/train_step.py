"""Training step throughput (clips/s) and peak memory, as core.train runs a step.

One step = forward in train mode (diversity losses on, so the attention maps are built), eq. 9
loss (`stmanet_loss`), backward, SGD with momentum (`core.train.make_optimizer`). On CPU: fp32
(core.train never trains in bf16 on CPU: torch 2.14.1's bf16 conv3d weight gradients are wrong
at small T), batch 8, for the CPU config the gesture run uses (stmanet_r18, base width 16, stem
temporal kernel 3, 32x112x112) and for stmanet_r50 at 16x112x112. On CUDA: batch 32 with bf16
autocast (the trainer's amp=auto), stmanet_r50 at 32x112x112.

Each config runs in its own subprocess (this script with --child), in alternating rounds
(A, B, B, A, ...): one warm-up step, then timed steps. Not in one process: after a step of the
big config, glibc's malloc (its dynamic mmap threshold raised by the big frees) makes the small
config's steps several times slower (measured: 0.7 s -> 11.7 s for the gesture step), which
would bench the allocator, not the step. Peak memory: the growth of the child's VmHWM (peak
resident set; /proc/self/status) over its steps: activations, gradients, optimizer state. On
CUDA: torch.cuda.max_memory_allocated.

    python bench/train_step.py [--repeats 3] [--threads N] [--save]
"""
from __future__ import annotations

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


def configs(quick: bool, cuda: bool) -> dict[str, dict]:
    """name -> {model config kwargs, clip (T, H, W), batch}."""
    if quick:
        return {"tiny_cpu": dict(name="stmanet_r10", kw=dict(num_classes=15, base_width=8), clip=(8, 32, 32), batch=2)}
    if cuda:
        return {"stmanet_r50_amp": dict(name="stmanet_r50", kw={}, clip=(32, 112, 112), batch=32, amp=True)}
    return {
        "gesture_cpu": dict(name="stmanet_r18", kw=dict(num_classes=15, base_width=16, stem_temporal_kernel=3),
                            clip=(32, 112, 112), batch=8),
        "stmanet_r50_16f": dict(name="stmanet_r50", kw={}, clip=(16, 112, 112), batch=8),
    }


def make_step(spec: dict, device: str):
    """A no-argument function running one training step of `spec`, and the model's config."""
    torch.manual_seed(0)
    cfg = config_by_name(spec["name"], **spec["kw"])
    model = build_model(cfg).to(device).train()
    optimizer = make_optimizer(TrainConfig(), model)
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
    """Subprocess body: one warm-up step, `steps` timed steps, and peak memory, as a JSON line."""
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    step, _ = make_step(configs(quick, cuda)[name], device)
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


def main(argv=None) -> dict:
    parser = base_parser(__doc__)
    parser.add_argument("--child", default=None, help=argparse_hidden())
    parser.add_argument("--child-steps", type=int, default=2, help=argparse_hidden())
    parser.add_argument("--steps", type=int, default=None, help="timed steps per subprocess (default 3, 1 with --quick)")
    args = parser.parse_args(argv)
    setup(args)
    if args.child:
        child(args.child, args.quick, args.child_steps)
        return {}
    load, start = os.getloadavg(), time.perf_counter()
    cuda = torch.cuda.is_available()
    repeats = args.repeats or (1 if args.quick else 2)
    steps = args.steps or (1 if args.quick else 3)
    specs = configs(args.quick, cuda)
    names = list(specs)
    got = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            got[name].append(run_child(name, args.quick, args.threads, steps, args.os_malloc))
    rows = []
    for name, spec in specs.items():
        wall = [w for g in got[name] for w in g["wall"]]
        cpu = [c for g in got[name] for c in g["cpu"]]
        rows.append({
            "config": name, "model": spec["name"], "model_overrides": spec["kw"], "clip": list(spec["clip"]),
            "batch": spec["batch"], "precision": "bf16 autocast" if spec.get("amp") and cuda else "fp32",
            "step_wall_s": summary(wall), "step_cpu_s": summary(cpu),
            "clips_per_s_wall": round(spec["batch"] / statistics.median(wall), 2),
            "clips_per_cpu_s": round(spec["batch"] / statistics.median(cpu), 2),
            "memory": {k: max(g[k] for g in got[name]) for k in got[name][0] if k not in ("wall", "cpu")},
        })
    result = {
        "script": "train_step",
        "quick": args.quick,
        "device": "cuda" if cuda else "cpu",
        "repeats": repeats,
        "steps_per_subprocess": steps,
        "steps": rows,
        "notes": ["random data and weights; a step is forward + eq. 9 loss (maps built for the diversity "
                  "terms) + backward + SGD, as core.train; data loading excluded (see data_loading.py)",
                  "each config in its own subprocesses, alternating; one warm-up step per subprocess"],
        "seconds": round(time.perf_counter() - start, 1),
        "machine": machine(load),
    }
    emit(result, "train_step", args.save)
    return result


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
