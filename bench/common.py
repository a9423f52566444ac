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
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from core.capability import bf16_skip_reason, describe  # noqa: E402
from core.model.kernels import InferenceConv3d  # noqa: E402
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


def _cpuinfo(field: str) -> str:
    """The first CPU's `field` in /proc/cpuinfo ("" where there is none: macOS, Windows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() == field:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _cpu_name() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


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
        **describe(),  # core.capability: bf16, fused oneDNN, CUDA, MPS, what auto picks
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


PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def precisions(device: str = "cpu") -> tuple[list[str], dict[str, str]]:
    """(precisions this device runs, {precision: why it is skipped}) from core.capability:
    a bf16 row on a machine without bf16 is skipped with the reason, never run."""
    reason = bf16_skip_reason(device)
    return (["fp32"] if reason else ["fp32", "bf16"]), ({"bf16": reason} if reason else {})


def peak_kernels(precision: str, device: str, quick: bool = False) -> dict[str, tuple[Callable[[], object], int]]:
    """{name: (call, FLOPs)}: dense kernels at `precision` whose best rate is the measured peak.

    Square matmuls of two sizes, a tall-skinny one (what a 1x1x1 convolution is), a large 1x1x1
    and a stage-2 3x3x3 convolution through the model's own oneDNN path (prepacked weights,
    channels_last):
    no single shape is the fastest on every CPU and thread count, so a model measured against one
    matmul could exceed "the peak" (it did: 1.11-1.16 against torch.mm 2048^2)."""
    dtype = PRECISION_DTYPES[precision]
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    kernels = {}
    for n in ((128, 256) if quick else (1024, 2048)):
        a, b = rand(n, n), rand(n, n)
        kernels[f"mm {n}^3"] = (lambda a=a, b=b: torch.mm(a, b), 2 * n**3)
    m, k = (512, 64) if quick else (25088, 512)  # 25088 = 8 x 4 x 28 x 28 positions of a stage's 1x1x1 conv
    a, b = rand(m, k), rand(k, k)
    kernels[f"mm {m}x{k}x{k}"] = (lambda a=a, b=b: torch.mm(a, b), 2 * m * k * k)
    n, c, t, hw = (2, 64, 4, 8) if quick else (8, 512, 4, 14)
    conv = InferenceConv3d(torch.randn(c, c, 1, 1, 1, generator=g), None, channels_last=True).to(device)
    x = rand(n, c, t, hw, hw).contiguous(memory_format=torch.channels_last_3d)
    conv(x)  # prepack once, as the model's convolutions do
    kernels[f"conv1x1x1 {c}->{c} at {n}x{t}x{hw}x{hw}"] = (lambda: conv(x), 2 * n * t * hw * hw * c * c)
    n, c, t, hw = (2, 16, 4, 8) if quick else (8, 64, 8, 28)  # a stage-2 3x3x3 convolution: the densest the model has
    conv3 = InferenceConv3d(torch.randn(c, c, 3, 3, 3, generator=g), None, padding=(1, 1, 1), channels_last=True).to(device)
    x3 = rand(n, c, t, hw, hw).contiguous(memory_format=torch.channels_last_3d)
    conv3(x3)
    kernels[f"conv3x3x3 {c}->{c} at {n}x{t}x{hw}x{hw}"] = (lambda: conv3(x3), 2 * n * t * hw * hw * c * c * 27)
    return kernels


def measured_peak(samples: dict[str, dict], kernels: dict[str, tuple[Callable, int]], prefix: str = "") -> dict:
    """The best GFLOP/s over `kernels` (their samples under prefix + name), per wall and CPU time,
    each kernel rated by its fastest round: an upper bound (a model is rated by its median round),
    so that load in one round cannot make the peak look lower than what a model reaches."""
    rates = {}
    for name, (_, flops) in kernels.items():
        s = samples[prefix + name]
        rates[name] = {"gflops_wall": round(flops / min(s["wall"]) / 1e9, 1),
                       "gflops_cpu": round(flops / min(s["cpu"]) / 1e9, 1)}
    best_wall = max(rates, key=lambda k: rates[k]["gflops_wall"])
    best_cpu = max(rates, key=lambda k: rates[k]["gflops_cpu"])
    return {"gflops_wall": rates[best_wall]["gflops_wall"], "gflops_cpu": rates[best_cpu]["gflops_cpu"],
            "best_kernel_wall": best_wall, "best_kernel_cpu": best_cpu, "kernels": rates}


def _cpu_flags() -> set[str]:
    return set(_cpuinfo("flags").split())


def _vendor() -> str:
    return _cpuinfo("vendor_id")


def _clock_ghz() -> tuple[float | None, str]:
    try:
        return int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1e6, "cpufreq max"
    except (OSError, ValueError):
        pass
    try:
        return float(_cpuinfo("cpu MHz")) / 1e3, "/proc/cpuinfo cpu MHz (nominal; turbo may be higher)"
    except ValueError:
        return None, "unknown"


def physical_peak(threads: int) -> dict:
    """What the silicon could do at `threads` threads: cores x fp32 FMA lanes x 2 FLOPs x FMA units
    x clock, from /proc/cpuinfo. An estimate, with its assumptions: two FMA units of the widest
    vector width, except AMD with AVX-512 but without AVX512-VP2INTERSECT (Zen 4), which runs
    512-bit FMAs as two 256-bit halves; bf16 as AVX512-BF16's dot product (2 products per fp32
    lane; AMX is not modelled); the clock /proc/cpuinfo reports, which on a VM is nominal (a
    measured rate above this estimate means the core ran at a boost clock)."""
    flags = _cpu_flags()
    ghz, clock_source = _clock_ghz()
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags and "fma" in flags else 4
    if lanes == 16 and _vendor() == "AuthenticAMD" and "avx512_vp2intersect" not in flags:
        lanes = 8  # Zen 4: 256-bit FMA datapaths
    logical = os.cpu_count() or 1
    smt = 1
    try:
        siblings = Path("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list").read_text().strip()
        smt = len([x for part in siblings.split(",") for x in _expand(part)])
    except OSError:
        pass
    cores = max(1, -(-min(threads, logical) // smt))  # threads on SMT siblings share a core's FMA units
    if ghz is None:
        return {"note": "clock unknown: no estimate", "fp32_lanes_per_fma_unit": lanes}
    fp32 = cores * lanes * 2 * 2 * ghz
    out = {"cores": cores, "threads_per_core": smt, "clock_ghz": round(ghz, 3), "clock_source": clock_source,
           "vendor": _vendor(), "fp32_lanes_per_fma_unit": lanes, "fma_units_assumed": 2, "gflops_fp32": round(fp32, 1)}
    if "avx512_bf16" in flags:
        out["gflops_bf16"] = round(2 * fp32, 1)
    out["amx"] = any(f.startswith("amx") for f in flags)
    return out


def _expand(part: str) -> list[int]:
    lo, _, hi = part.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def count_flops(build: Callable[[], torch.nn.Module], shape: tuple[int, ...], **forward_kw) -> tuple[int, int]:
    """(FLOPs of one forward at `shape`, parameters), counted on the meta device: no memory, no time."""
    with torch.device("meta"):
        model = build().eval()
        clip = torch.empty(shape)
    params = sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(clip, **forward_kw)
    return counter.get_total_flops(), params
