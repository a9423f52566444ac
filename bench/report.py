"""Markdown tables from the saved results (bench/results/*.json), for bench/README.md and the
top-level README's Performance section. Prints markdown; reads nothing but the JSON files.

    python bench/report.py [--results bench/results]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def load(folder: Path, name: str) -> dict | None:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(r: dict) -> str:
    m = r["machine"]
    load = max(m.get("loadavg_start", [0])[0], m["loadavg_end"][0])
    return (f"_{m['cpu']}, {m['cpu_count']} CPUs, torch {m['torch']}, {m['threads']} thread(s); "
            f"1-min load average up to {load:.1f} while measuring; {r.get('repeats', '?')} rounds, medians._")


def flops_section(r: dict) -> str:
    rows = [[v["name"], v["gflops"], v["params_m"], v["params_without_stage_heads_m"]] for v in r["variants"]]
    return (table(["variant", "GFLOPs / clip", "params (M)", "params w/o stage heads (M)"], rows)
            + f"\n\nST-MANet-50 / backbone in FLOPs: **{r['stmanet_over_backbone_flops']}** (paper: 1.24).")


def latency_section(r: dict) -> str:
    speed = {(s["model"], s["variant"], s["precision"], s["batch"]): s for s in r["speedup_over_eager_fp32"]}
    rows, skipped = [], set()
    for x in r["latency"]:
        if "skipped" in x:
            skipped.add(f"{x['precision']}: {x['skipped']}")
            continue
        sp = speed.get((x["model"], x["variant"], x["precision"], x["batch"]))
        rows.append([x["model"], x["batch"], x["variant"], x["precision"], x["per_clip_wall_s"], x["per_clip_cpu_s"],
                     x["gflops_cpu"], x["fraction_of_peak_cpu"], x["fraction_of_peak_wall"],
                     f"{sp['speedup_cpu']}x" if sp else "1x"])
    peaks = "; ".join(f"batch {p['batch']}: " + ", ".join(
        f"{k} {v['gflops_cpu']} ({v['best_kernel_cpu']})" for k, v in p.items() if isinstance(v, dict) and "gflops_cpu" in v)
        for p in r["measured_peak"])
    phys = r.get("physical_peak") or {}
    pairs = [[p["batch"], p["variant"], p["precision"], p["time_ratio_cpu"], p["time_ratio_wall"], p["flop_ratio"]]
             for p in r["stmanet_over_backbone"]]
    acc = []
    for model, a in r["bf16_vs_fp32"].items():
        for k in ("optimized_fp32", "eager_bf16", "optimized_bf16"):
            if "skipped" not in a[k]:
                acc.append([model, k, a[k]["max_abs_logit_diff"], a[k]["relative_to_max_logit"], a[k]["top1_agreement"]])
    dedicated = [p for p in r.get("stmanet_over_backbone_dedicated", []) if "skipped" not in p]
    return "\n\n".join([
        machine_line(r),
        *([f"Skipped: {'; '.join(sorted(skipped))}."] if skipped else []),
        table(["model", "batch", "variant", "precision", "s / clip (wall)", "CPU s / clip", "GFLOP/s per CPU-s",
               "of peak (CPU)", "of peak (wall)", "speed-up (CPU) vs eager fp32"], rows),
        f"Measured peak in the same rounds (GFLOP/s per CPU-second, the best of square and tall matmuls and 1x1x1 / "
        f"3x3x3 convolutions; '|1t': one thread): {peaks}. Physical estimate at {phys.get('threads')} thread(s): "
        f"fp32 {phys.get('gflops_fp32')}, bf16 {phys.get('gflops_bf16')} GFLOP/s ({phys.get('cores')} core(s) x "
        f"{phys.get('fp32_lanes_per_fma_unit')} fp32 lanes x 2 FMA units x 2 x {phys.get('clock_ghz')} GHz, "
        f"{phys.get('clock_source')}).",
        "ST-MANet-50 / its backbone, paired per round (in the rounds above, with every other model between):\n\n"
        + table(["batch", "variant", "precision", "time ratio (CPU)", "time ratio (wall)", "FLOP ratio"], pairs),
        *([("The same pair timed alone (only the two optimized models, alternating): median of the per-round "
            "CPU-time ratios, their quartiles and range, minor page faults per forward:\n\n")
           + table(["batch", "variant", "precision", "rounds", "time ratio (CPU)", "quartiles", "range",
                    "time ratio (wall)", "page faults (ST-MANet / backbone)", "FLOP ratio"],
                   [[p["batch"], p["variant"], p["precision"], p["rounds"], f"**{p['time_ratio_cpu']}**",
                     "-".join(map(str, p["time_ratio_cpu_quartiles"])), "-".join(map(str, p["time_ratio_cpu_range"])),
                     p["time_ratio_wall"], f"{p['page_faults']['stmanet_r50']} / {p['page_faults']['r3d50_baseline']}",
                     p["flop_ratio"]] for p in dedicated])] if dedicated else []),
        "bf16 against eager fp32 on a fixed batch (random weights):\n\n"
        + table(["model", "run", "max abs logit diff", "relative to max logit", "top-1 agreement"], acc),
    ])


def e2e_section(r: dict) -> str:
    rows = []
    for x in r["runs"]:
        t = x["timings_median_s"]
        rows.append([x["variant"], x["precision"], "yes" if x["attention_maps"] else "no", x["wall_s"]["median"],
                     x["cpu_s"]["median"], t["decode"], t["preprocess"], t["model"], t["maps"]])
    v, p = r["video"], r["preprocess"]
    return "\n\n".join([
        machine_line(r),
        f"Video: {v['source']}, {v['seconds']} s, {v['size'][0]}x{v['size'][1]}, {v['frames']} frames, "
        f"{v['windows']} windows; checkpoint: {r['checkpoint']['source']}.",
        table(["model", "precision", "maps", "total wall s", "CPU s", "decode", "preprocess", "model", "maps"], rows),
        f"Preprocessing alone ({p['windows']} windows, core.data.clips.test_batch): "
        f"{p['test_batch_wall_s']['median']} s. " + bf16_line(r["bf16_vs_fp32"]),
    ])


def bf16_line(b: dict) -> str:
    if "skipped" in b:
        return f"bf16 not measured: {b['skipped']}."
    return (f"bf16 vs fp32 (optimized, this video): same top-1 {b.get('same_top1')}, same top-k order "
            f"{b['same_topk_labels']}, top-k sets share {b.get('topk_set_overlap')}, per-window top-1 agreement "
            f"{b['window_top1_agreement']}, max prob diff {b['max_abs_prob_diff']}.")


def train_section(r: dict) -> str:
    rows = []
    for s in r["steps"]:
        mem = s["memory"]
        rows.append([s["setting"], s["variant"], s["model"], "x".join(map(str, s["clip"])), s["batch"], s["precision"],
                     s["step_wall_s"]["median"], s["step_cpu_s"]["median"], s["clips_per_s_wall"],
                     mem.get("step_peak_rss_growth_mb", ""), mem.get("cuda_max_memory_allocated_mb", "")])
    comp = [[c["setting"], f"**{c['stmanet_over_backbone_time_cpu']['median']}** "
             f"({'-'.join(map(str, c['stmanet_over_backbone_time_cpu']['range']))})",
             f"{c['stmanet_over_backbone_time']['median']} ({'-'.join(map(str, c['stmanet_over_backbone_time']['range']))})",
             c["attention_modules_cost"]["median"], c["attention_maps_cost"]["median"],
             c["stmanet_over_backbone_memory"], "yes" if c["target"]["met"] else "no"] for c in r["comparisons"]]
    return "\n\n".join([
        machine_line(r),
        table(["setting", "variant", "model", "clip", "batch", "precision", "step s (wall)", "step CPU s", "clips/s",
               "peak RSS growth (MB)", "CUDA max allocated (MB)"], rows),
        "Side by side, per round (medians, range over rounds):\n\n" + table(
            ["setting", "ST-MANet / backbone, CPU time", "same, wall", "modules without maps / backbone",
             "maps on / off", "memory ratio", "<= 1.3?"], comp),
    ])


def data_section(r: dict) -> str:
    rows = [[x["source"], x["num_workers"], x["clips_per_s"], x["clips_per_s_per_worker"],
             "yes" if x["keeps_model_fed"] else "no"] for x in r["loader"]]
    m = r["model_train_step"]
    return "\n\n".join([
        machine_line(r),
        f"Videos: {r['videos']['count']} from the {r['videos']['source']}; {r['clips_per_measurement']} clips per "
        f"measurement, batch {r['batch']}; frame cache built in {r['cache_build_s']} s. Model training step "
        f"({m['config']} {m['overrides']}, {'x'.join(map(str, m['clip']))}): **{m['clips_per_s']} clips/s**.",
        table(["source", "workers", "clips/s", "clips/s per worker", "keeps the model fed"], rows),
    ])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args(argv)
    folder = Path(args.results)
    sections = [("FLOPs (bench/flops.py)", "flops", flops_section)]
    for suffix, label in (("", "default threads"), ("-threads1", "one thread")):
        sections += [
            (f"Latency, {label} (bench/latency.py)", "latency" + suffix, latency_section),
            (f"Upload to answer, {label} (bench/predict_e2e.py)", "predict_e2e" + suffix, e2e_section),
            (f"Training step, {label} (bench/train_step.py)", "train_step" + suffix, train_section),
            (f"Data loading, {label} (bench/data_loading.py)", "data_loading" + suffix, data_section),
        ]
    for title, name, render in sections:
        result = load(folder, name)
        if result is not None:
            print(f"### {title}\n\n{render(result)}\n")


if __name__ == "__main__":
    main()
