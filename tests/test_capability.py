"""core.capability: the device `auto` picks, bf16 answers (and the switch that turns them off),
and the fallback to the CPU when a device lacks an operator, checked without the hardware."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from core import capability as cap
from core.train import TrainingError, pick_device
from conftest import ROOT

MPS_MISSING = "The operator 'aten::foo' is not currently implemented for the MPS device. As a temporary fix..."


@pytest.mark.parametrize("cuda,mps,rank,expected", [
    (True, True, 0, "cuda:0"), (True, False, 1, "cuda:1"), (False, True, 0, "mps"), (False, False, 0, "cpu"),
])
def test_auto_picks_cuda_then_mps_then_cpu(cuda, mps, rank, expected):
    assert cap.resolve_device("auto", rank, cuda=cuda, mps=mps) == torch.device(expected)
    assert cap.resolve_device(None, rank, cuda=cuda, mps=mps) == torch.device(expected)
    assert cap.resolve_device(" AUTO ", rank, cuda=cuda, mps=mps) == torch.device(expected)


def test_named_devices_and_what_is_missing():
    assert cap.resolve_device("cpu", cuda=True, mps=True) == torch.device("cpu")
    assert cap.resolve_device("cuda", 2, cuda=True, mps=False) == torch.device("cuda:2")  # this rank's GPU
    assert cap.resolve_device("cuda:1", 2, cuda=True, mps=False) == torch.device("cuda:1")  # named: kept
    assert cap.resolve_device("mps", cuda=False, mps=True) == torch.device("mps")
    with pytest.raises(ValueError, match="CUDA was asked for but no GPU is visible here .available: cpu, mps"):
        cap.resolve_device("cuda", cuda=False, mps=True)
    with pytest.raises(ValueError, match="Apple MPS was asked for but is not available here .available: cpu, cuda"):
        cap.resolve_device("mps", cuda=True, mps=False)
    with pytest.raises(ValueError, match="unknown device 'tpu9'"):
        cap.resolve_device("tpu9")
    with pytest.raises(ValueError, match="unsupported device 'meta'"):
        cap.resolve_device("meta")


def test_trainer_turns_a_missing_device_into_its_own_error(monkeypatch):
    monkeypatch.setattr(cap, "cuda_available", lambda: False)
    with pytest.raises(TrainingError, match="no GPU is visible.*use --device cpu"):
        pick_device("cuda")
    assert pick_device("cpu") == torch.device("cpu")


def test_bf16_switch_turns_every_answer_off(monkeypatch):
    for value in ("1", "true", "yes"):
        monkeypatch.setenv(cap.NO_BF16_ENV, value)
        assert not cap.bf16_supported("cpu") and not cap.bf16_supported("cuda")
        assert cap.bf16_skip_reason("cpu") == "bf16 turned off by STMANET_NO_BF16"
        assert cap.describe()["bf16_cpu"] is False and cap.describe()["bf16_forced_off"] is True
    for value in ("", "0", "false"):
        monkeypatch.setenv(cap.NO_BF16_ENV, value)
        assert cap.bf16_supported("cpu") == cap.describe()["bf16_cpu_hardware"]
    monkeypatch.delenv(cap.NO_BF16_ENV)
    if not cap.bf16_supported("cpu"):
        assert "AVX-512" in cap.bf16_skip_reason("cpu")  # a CPU without it is told what it lacks


def test_the_switch_reaches_a_fresh_process():
    """What `STMANET_NO_BF16=1 bash .ci/run` relies on: the variable, not an import order."""
    code = "from core.capability import bf16_supported; print(bf16_supported('cpu'))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "STMANET_NO_BF16": "1"})
    assert done.stdout.strip() == "False", done.stderr


def test_missing_operator_falls_back_to_the_cpu_with_a_message():
    seen, messages = [], []

    def run(device):
        seen.append(device.type)
        if device.type == "mps":
            raise NotImplementedError(MPS_MISSING)
        return "ran"

    assert cap.with_cpu_fallback(run, torch.device("mps"), messages.append) == ("ran", torch.device("cpu"))
    assert seen == ["mps", "cpu"]
    assert messages == ["mps lacks an operator this model needs (The operator 'aten::foo' is not currently "
                        "implemented for the MPS device. As a temporary fix...): running on the CPU"]


def test_other_errors_are_not_hidden_by_the_fallback():
    def broken(device):
        raise RuntimeError("shapes do not match")

    with pytest.raises(RuntimeError, match="shapes"):
        cap.with_cpu_fallback(broken, torch.device("mps"))

    def lacking_on_cpu(device):  # the CPU is never "missing an op": nothing to fall back to
        raise NotImplementedError(MPS_MISSING)

    with pytest.raises(NotImplementedError):
        cap.with_cpu_fallback(lacking_on_cpu, torch.device("cpu"))
    assert not cap.is_missing_op(RuntimeError("PyTorch is not linked with support for mps devices"), torch.device("mps"))
    assert cap.with_cpu_fallback(lambda d: d.type, torch.device("cpu")) == ("cpu", torch.device("cpu"))


def test_describe_lists_what_the_benchmarks_record():
    facts = cap.describe()
    assert {"bf16_cpu", "bf16_cpu_hardware", "bf16_forced_off", "onednn", "onednn_fused_convolutions", "cuda",
            "mps", "auto_device"} <= set(facts)
    assert facts["auto_device"] == str(cap.resolve_device("auto"))
