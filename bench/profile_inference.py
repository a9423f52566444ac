"""Where ST-MANet's extra inference time goes: a per-op profile of the optimized inference copy of
ST-MANet and of its plain backbone (same code), side by side.

torch.profiler over several alternating rounds, ops grouped by name and input shapes. An op the
backbone also runs (same name, same shapes) counts as shared; the rest is what the attention
modules add. Reports, per model, the shared ops' time, the added ops' time and FLOP rate, and
the added ops that cost most, so a claim like "the modules run slower per FLOP than the
backbone" is checked on the machine at hand. Prints one JSON object.

    python bench/profile_inference.py [--depth 50] [--threads 1] [--save]
"""
from __future__ import annotations

import collections
import os
import time

import torch
from torch.profiler import ProfilerActivity, profile

from common import base_parser, count_flops, emit, machine, setup

from core.model import build_model, config_by_name
from core.model.inference import optimize_for_inference


def op_times(model: torch.nn.Module, clip: torch.Tensor) -> dict[tuple[str, str], float]:
    """Self CPU ms per (op name, input shapes) for one forward."""
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        model(clip)
    return {(e.key, str(e.input_shapes)): e.self_cpu_time_total / 1000 for e in prof.key_averages(group_by_input_shape=True)}


def main(argv=None) -> dict:
    parser = base_parser(__doc__)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--top", type=int, default=8, help="added ops listed, most costly first")
    args = parser.parse_args(argv)
    if args.quick:
        args.depth, args.frames, args.size = 10, 8, 32
    rounds = args.repeats or (1 if args.quick else 4)
    setup(args)
    load, start = os.getloadavg(), time.perf_counter()
    torch.manual_seed(0)
    shape = (1, 3, args.frames, args.size, args.size)
    clip = torch.randn(*shape)
    names = {"stmanet": f"stmanet_r{args.depth}", "backbone": f"r3d{args.depth}_baseline"}
    models, flops = {}, {}
    for role, name in names.items():
        cfg = config_by_name(name, num_classes=101)
        flops[role] = count_flops(lambda: build_model(cfg), shape)[0]
        models[role] = optimize_for_inference(build_model(cfg).eval(), channels_last=True)
        with torch.inference_mode():
            models[role](clip)  # warm-up: oneDNN primitives and weight reorders
    totals = {role: collections.defaultdict(float) for role in models}
    for _ in range(rounds):
        for role, model in models.items():
            for key, ms in op_times(model, clip).items():
                totals[role][key] += ms / rounds
    backbone, stmanet = totals["backbone"], totals["stmanet"]
    shared = [k for k in stmanet if k in backbone]
    added = sorted((k for k in stmanet if k not in backbone), key=lambda k: -stmanet[k])
    added_ms = sum(stmanet[k] for k in added)
    backbone_ms = sum(backbone.values())
    added_gflops = (flops["stmanet"] - flops["backbone"]) / 1e9
    result = {
        "script": "profile_inference",
        "quick": args.quick,
        "clip": list(shape[1:]),
        "rounds": rounds,
        "precision": "fp32",
        "backbone_ms": round(backbone_ms, 2),
        "shared_ops_ms": {"backbone": round(sum(backbone[k] for k in shared), 2),
                          "stmanet": round(sum(stmanet[k] for k in shared), 2)},
        "added_ms": round(added_ms, 2),
        "added_gflops": round(added_gflops, 3),
        "gflop_per_s": {"backbone": round(flops["backbone"] / 1e9 / max(backbone_ms / 1000, 1e-9), 1),
                        "added": round(added_gflops / max(added_ms / 1000, 1e-9), 1)},
        "profiled_time_ratio": round(sum(stmanet.values()) / max(backbone_ms, 1e-9), 3),
        "flop_ratio": round(flops["stmanet"] / flops["backbone"], 3),
        "top_added_ops": [{"op": k[0], "input_shapes": k[1][:160], "ms": round(stmanet[k], 2)} for k in added[:args.top]],
        "seconds": round(time.perf_counter() - start, 1),
        "machine": machine(load),
    }
    emit(result, "profile_inference", args.save)
    return result


if __name__ == "__main__":
    main()
