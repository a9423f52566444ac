"""FLOPs and parameters of every Table 4 variant (paper's ablation), and ST-MANet-50 / backbone.

Counted with torch.utils.flop_counter on the meta device (no memory, no time; 2 FLOPs per
multiply-add), at the paper's 32x112x112 clip, for the fast path (no attention maps) and the
path that returns the maps (the app's "look inside"). Prints one JSON object.

    python bench/flops.py [--depth 50] [--save]
"""
from __future__ import annotations

import time

from common import base_parser, count_flops, emit, machine, setup

from core.model import build_model, config_by_name, variant_names


def variant_costs(depth: int, shape: tuple[int, ...], num_classes: int) -> list[dict]:
    rows = []
    for name in variant_names(depth):
        cfg = config_by_name(name, num_classes=num_classes)
        flops, params = count_flops(lambda: build_model(cfg), shape)
        flops_maps, _ = count_flops(lambda: build_model(cfg), shape, return_attention=True)
        heads = sum(c * num_classes + num_classes for c in cfg.stage_channels) if cfg.stage_heads else 0
        rows.append({
            "name": name,
            "gflops": round(flops / 1e9, 2),
            "gflops_with_maps": round(flops_maps / 1e9, 2),
            "params_m": round(params / 1e6, 2),
            "params_without_stage_heads_m": round((params - heads) / 1e6, 2),
        })
    return rows


def main(argv=None) -> dict:
    parser = base_parser(__doc__)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--num-classes", type=int, default=101)
    args = parser.parse_args(argv)
    if args.quick:
        args.depth, args.frames, args.size = 10, 8, 32
    setup(args)
    load, start = __import__("os").getloadavg(), time.perf_counter()
    shape = (1, 3, args.frames, args.size, args.size)
    rows = variant_costs(args.depth, shape, args.num_classes)
    by_name = {r["name"]: r for r in rows}
    full, base = by_name[f"stmanet_r{args.depth}"], by_name[f"r3d{args.depth}_baseline"]
    result = {
        "script": "flops",
        "quick": args.quick,
        "clip": list(shape[1:]),
        "num_classes": args.num_classes,
        "variants": rows,
        "stmanet_over_backbone_flops": round(full["gflops"] / base["gflops"], 3),
        "paper_stmanet_over_backbone_flops": 1.24,
        "seconds": round(time.perf_counter() - start, 1),
        "machine": machine(load),
    }
    emit(result, "flops", args.save)
    return result


if __name__ == "__main__":
    main()
