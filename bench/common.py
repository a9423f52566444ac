"""Shared pieces of the benchmark scripts: machine facts, interleaved timing, JSON output.

Why interleaved: the 2-core machine these run on is shared (a training run, other people's
tests), so absolute times drift by 2x within minutes. Every script measures the variants it
compares in one process, in rounds (A, B, C, then C, B, A, ...), and reports for each pair the
median of the per-round ratios: two runs a second apart see the same load, so ratios hold when
absolute numbers do not. Each sample records wall time and process CPU time (all threads);
with one thread (--threads 1) CPU time is nearly load-independent, with more it includes the
time OpenMP workers spin while waiting for a descheduled sibling.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python bench/x.py`: make `core` importable
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from core.runtime import keep_freed_memory  # noqa: E402

RESULTS = REPO / "bench" / "results"


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny settings: a smoke test in seconds")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds per variant (default: per script)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    parser.add_argument("--os-malloc", action="store_true",
                        help="leave glibc's malloc as is (default: core.runtime.keep_freed_memory, as the Predictor does)")
    parser.add_argument("--save", action="store_true", help="also write bench/results/<script>.json")
    return parser


_REQUESTED: dict = {}


def setup(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    _REQUESTED["threads"] = args.threads
    _REQUESTED["keeps_freed_memory"] = False if args.os_malloc else keep_freed_memory()
    torch.manual_seed(0)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(load_before: tuple[float, float, float] | None = None) -> dict:
    """What the numbers were measured on, and how loaded it was (os.getloadavg)."""
    cpus = os.cpu_count() or 1
    load = os.getloadavg()
    info = {
        "cpu": _cpu_name(),
        "cpu_count": cpus,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "threads_requested": _REQUESTED.get("threads"),
        "malloc_keeps_freed_memory": _REQUESTED.get("keeps_freed_memory"),
        "interop_threads": torch.get_num_interop_threads(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "bf16_cpu": bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "loadavg_end": [round(x, 2) for x in load],
    }
    if load_before is not None:
        info["loadavg_start"] = [round(x, 2) for x in load_before]
    worst = max(load[0], (load_before or load)[0])
    others = worst - torch.get_num_threads()  # the benchmark's own threads count in the load average
    if others > 0.5:
        info["note"] = (
            f"machine was loaded: 1-min load average up to {worst:.1f} on {cpus} CPUs while measuring "
            f"(this benchmark runs {torch.get_num_threads()} thread(s)); absolute times are inflated and noisy, "
            "compare the per-round ratios"
        )
    return info


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _minor_faults() -> int:
    try:
        import resource
    except ImportError:  # not on Windows
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_once(fn: Callable[[], object]) -> tuple[float, float, int]:
    """(wall seconds, process CPU seconds, minor page faults) of one call."""
    sync()
    faults, wall, cpu = _minor_faults(), time.perf_counter(), time.process_time()
    fn()
    sync()
    return time.perf_counter() - wall, time.process_time() - cpu, _minor_faults() - faults


def interleave(variants: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, dict]:
    """Time every variant `repeats` times in alternating rounds;
    {name: {"wall": [...], "cpu": [...], "faults": [...]}} (faults: minor page faults, which a
    forward that reuses its memory does not take; see core.runtime.keep_freed_memory)."""
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    samples = {name: {"wall": [], "cpu": [], "faults": []} for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            wall, cpu, faults = time_once(variants[name])
            samples[name]["wall"].append(wall)
            samples[name]["cpu"].append(cpu)
            samples[name]["faults"].append(faults)
    return samples


def summary(values: list[float], digits: int = 4) -> dict:
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "n": len(values)}


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of a[i] / b[i]: the load-robust `a takes x times b`."""
    return round(statistics.median(x / y for x, y in zip(a, b)), 3)


def emit(result: dict, name: str, save: bool) -> None:
    """Print one JSON object; with save also write bench/results/<name>.json, or
    <name>-threads<N>.json when --threads was given (so both settings can be kept)."""
    text = json.dumps(result, indent=1)
    print(text)
    if save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        threads = result.get("machine", {}).get("threads_requested")
        stem = f"{name}-threads{threads}" if threads else name
        (RESULTS / f"{stem}.json").write_text(text + "\n")


def matmul_peak(n: int, repeats: int, dtypes=("fp32", "bf16")) -> dict:
    """GFLOP/s of torch.mm on n x n matrices, per dtype, interleaved; the machine's practical
    limit for dense work at this precision and thread count."""
    dtype_of = {"fp32": torch.float32, "bf16": torch.bfloat16}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    mats = {k: (torch.randn(n, n, device=device).to(dtype_of[k]), torch.randn(n, n, device=device).to(dtype_of[k]))
            for k in dtypes}
    samples = interleave({k: (lambda a=a, b=b: torch.mm(a, b)) for k, (a, b) in mats.items()}, repeats)
    flops = 2 * n**3
    out = {}
    for k, s in samples.items():
        out[k] = {
            "gflops_wall": round(flops / statistics.median(s["wall"]) / 1e9, 1),
            "gflops_cpu": round(flops / statistics.median(s["cpu"]) / 1e9, 1),
            "gflops_wall_best": round(flops / min(s["wall"]) / 1e9, 1),
        }
    return {"n": n, **out}


def count_flops(build: Callable[[], torch.nn.Module], shape: tuple[int, ...], **forward_kw) -> tuple[int, int]:
    """(FLOPs of one forward at `shape`, parameters), counted on the meta device: no memory, no time."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build().eval()
        clip = torch.empty(shape)
    params = sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(clip, **forward_kw)
    return counter.get_total_flops(), params
