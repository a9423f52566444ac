"""What this machine can do, asked in one place: bf16, oneDNN's fused kernels, CUDA, Apple MPS.

The predictor, the inference copy, the trainer, the evaluator, the app, the benchmarks and the
tests all ask here; none probes torch itself. `resolve_device("auto")` picks CUDA, then MPS,
then the CPU.

`STMANET_NO_BF16=1` makes every answer about bf16 "no" (on any device), so that a machine with
bf16 can run the path of one without: the predictor then runs fp32 with a note, bf16 benchmark
rows are skipped with the reason, bf16 tests are skipped with it.
"""
from __future__ import annotations

import functools
import logging
import os
from typing import Callable, TypeVar

import torch

log = logging.getLogger(__name__)

NO_BF16_ENV = "STMANET_NO_BF16"
DEVICE_CHOICES = "auto | cpu | cuda | cuda:N | mps"
T = TypeVar("T")


def bf16_forced_off() -> bool:
    return os.environ.get(NO_BF16_ENV, "").strip().lower() not in ("", "0", "false", "no")


def bf16_skip_reason(device: torch.device | str = "cpu") -> str | None:
    """Why bf16 cannot run on `device` here, or None when it can."""
    device = torch.device(device)
    if bf16_forced_off():
        return f"bf16 turned off by {NO_BF16_ENV}"
    if device.type == "cuda":
        return None if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "this GPU has no bf16"
    if device.type == "mps":
        return None if _mps_bf16() else "this Apple GPU / macOS has no bf16 (macOS 14 or later has)"
    if device.type == "cpu":
        return None if _cpu_bf16() else ("this CPU has no bf16 instructions oneDNN can use (it needs AVX-512 "
                                         "BW/VL/DQ or AVX-NE-CONVERT)")
    return f"bf16 is not checked on {device.type}"


def bf16_supported(device: torch.device | str = "cpu") -> bool:
    return bf16_skip_reason(device) is None


@functools.lru_cache(maxsize=1)
def _cpu_bf16() -> bool:
    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@functools.lru_cache(maxsize=1)
def _mps_bf16() -> bool:
    if not mps_available():
        return False
    try:
        torch.ones(1, dtype=torch.bfloat16, device="mps")
        return True
    except (RuntimeError, TypeError):
        return False


@functools.lru_cache(maxsize=1)
def fused_onednn_ops():
    """oneDNN's convolution with fused post-ops (ReLU, residual sums) and its weight prepacking,
    as (pointwise, pointwise binary, pointwise binary in place, reorder), or None where this torch
    build lacks them (the inference copy then uses plain convolutions)."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        ops = torch.ops.mkldnn
        return (ops._convolution_pointwise.default, ops._convolution_pointwise.binary,
                ops._convolution_pointwise_.binary, ops._reorder_convolution_weight)
    except (AttributeError, RuntimeError):
        return None


def cuda_available() -> bool:
    return torch.cuda.is_available()


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: str | torch.device | None = "auto", local_rank: int = 0, *,
                   cuda: bool | None = None, mps: bool | None = None) -> torch.device:
    """The torch device `name` means here. "auto" (or None): CUDA (this rank's GPU), else Apple
    MPS, else the CPU. A named device that is not present is a ValueError saying what is.
    `cuda` / `mps` override the probes (tests check the choice without the hardware)."""
    has_cuda = cuda_available() if cuda is None else cuda
    has_mps = mps_available() if mps is None else mps
    text = "auto" if name is None else str(name).strip().lower()
    if text in ("", "auto"):
        if has_cuda:
            return torch.device(f"cuda:{local_rank}")
        return torch.device("mps") if has_mps else torch.device("cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}: use {DEVICE_CHOICES}") from None
    if device.type == "cuda":
        if not has_cuda:
            raise ValueError(f"CUDA was asked for but no GPU is visible here ({present(has_cuda, has_mps)})")
        return torch.device(f"cuda:{local_rank}") if device.index is None else device
    if device.type == "mps" and not has_mps:
        raise ValueError(f"Apple MPS was asked for but is not available here ({present(has_cuda, has_mps)})")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {name!r}: use {DEVICE_CHOICES}")
    return device


def present(has_cuda: bool | None = None, has_mps: bool | None = None) -> str:
    has_cuda = cuda_available() if has_cuda is None else has_cuda
    has_mps = mps_available() if has_mps is None else has_mps
    return "available: " + ", ".join(["cpu"] + (["cuda"] if has_cuda else []) + (["mps"] if has_mps else []))


def is_missing_op(exc: BaseException, device: torch.device) -> bool:
    """Whether `exc` says an operator is not implemented on `device` (MPS lacks some), the case
    in which running on the CPU instead is the right answer."""
    return (device.type == "mps" and isinstance(exc, (NotImplementedError, RuntimeError))
            and "mps" in str(exc).lower() and ("not implemented" in str(exc).lower()
                                                or "not currently implemented" in str(exc).lower()
                                                or "not supported" in str(exc).lower()))


def with_cpu_fallback(run: Callable[[torch.device], T], device: torch.device,
                      on_fallback: Callable[[str], None] | None = None) -> tuple[T, torch.device]:
    """run(device); if the device lacks an operator `run` needs (`is_missing_op`), run(cpu)
    instead, with a message (logged, and passed to on_fallback). Returns (result, device used).
    Any other error propagates."""
    try:
        return run(device), device
    except (NotImplementedError, RuntimeError) as exc:
        if not is_missing_op(exc, device):
            raise
        message = f"{device.type} lacks an operator this model needs ({str(exc).splitlines()[0]}): running on the CPU"
        log.warning("%s", message)
        if on_fallback is not None:
            on_fallback(message)
        cpu = torch.device("cpu")
        return run(cpu), cpu


def describe() -> dict:
    """This machine's answers, for benchmark JSON and bug reports."""
    return {
        "bf16_cpu": bf16_supported("cpu"),
        "bf16_cpu_hardware": _cpu_bf16(),
        "bf16_forced_off": bf16_forced_off(),
        "onednn": torch.backends.mkldnn.is_available(),
        "onednn_fused_convolutions": fused_onednn_ops() is not None,
        "cuda": torch.cuda.get_device_name(0) if cuda_available() else None,
        "bf16_cuda": bf16_supported("cuda") if cuda_available() else None,
        "mps": mps_available(),
        "auto_device": str(resolve_device("auto")),
    }
