"""core.memory: a training run's memory, estimated before it starts, against a real step's peak,
and the run manager refusing a run whose estimate is above its limit."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from core.memory import OVERHEAD, TRANSIENT, saved_activation_bytes, training_memory
from core.model import config_by_name
from core.runs import RunManager
from conftest import ROOT, one_thread_env

SMALL = dict(num_classes=15, base_width=8, stem_temporal_kernel=3)

PROBE = """
import json, sys, torch
from core.model import build_model, config_by_name, stmanet_loss
from core.memory import training_memory
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
name, b, t, h = sys.argv[1], *map(int, sys.argv[2:5])
cfg = config_by_name(name, num_classes=15, base_width=8, stem_temporal_kernel=3)
model, start = build_model(cfg).train(), None
opt = torch.optim.AdamW(model.parameters())
clip, labels = torch.randn(b, 3, t, h, h), torch.zeros(b, dtype=torch.long)
start = peak()
for _ in range(2):
    loss = stmanet_loss(model(clip), labels, cfg).total
    opt.zero_grad(); loss.backward(); opt.step()
print(json.dumps({"measured": peak() - start, "estimate": training_memory(cfg, b, t, h, h).total}))
"""


def test_activations_scale_with_the_clip_and_the_batch():
    cfg = config_by_name("stmanet_r18", **SMALL)
    one = saved_activation_bytes(cfg, 2, 8, 32, 32)
    two, three = saved_activation_bytes(cfg, 4, 8, 32, 32), saved_activation_bytes(cfg, 6, 8, 32, 32)
    # linear in the batch (plus a batch-free part: the stacked query/key/value weights saved for backward)
    assert three - two == pytest.approx(two - one, rel=0.02) and two - one > 0.9 * one
    assert saved_activation_bytes(cfg, 2, 16, 32, 32) == pytest.approx(2 * one, rel=0.1)
    plain = saved_activation_bytes(config_by_name("r3d18_baseline", **SMALL), 2, 8, 32, 32)
    assert plain < one  # TDA and SDA save their own tensors
    est = training_memory(cfg, 2, 8, 32, 32)
    inputs = 2 * 3 * 8 * 32 * 32 * 5
    assert est.inputs == inputs and est.total == int(TRANSIENT * (est.activations + inputs)) + est.parameters + OVERHEAD
    sgd = training_memory(cfg, 2, 8, 32, 32, optimizer="sgd")
    assert sgd.parameters == est.parameters * 3 // 4  # weights, grads, one momentum vs AdamW's two states


@pytest.mark.parametrize("name,batch,frames,side", [("stmanet_r18", 8, 16, 64), ("r3d18_baseline", 8, 16, 64)])
def test_a_real_step_stays_below_the_estimate(name, batch, frames, side):
    done = subprocess.run([sys.executable, "-c", PROBE, name, str(batch), str(frames), str(side)], cwd=ROOT,
                          env=one_thread_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout)
    assert got["estimate"] / 3 <= got["measured"] <= got["estimate"], got


def test_run_manager_refuses_a_run_above_its_memory_limit(tmp_path):
    values = dict(model="stmanet_r18", base_width=8, stem_temporal_kernel=3, batch_size=256, num_frames=128,
                  height=112, width=112, data_layout="folder", data_root=str(tmp_path / "data"))
    (tmp_path / "data").mkdir()
    unlimited = RunManager(tmp_path / "runs", tmp_path / "data")
    assert unlimited.check_memory(values) is None
    limited = RunManager(tmp_path / "runs", tmp_path / "data", max_run_memory_bytes=16 * 2**30)
    with pytest.raises(ValueError, match=r"this run would need about [0-9.]+ GiB .*more than the 16.0 GiB one run "
                                         r"may use on this server: lower the batch size or the frames per clip"):
        limited.check_memory(values)
    with pytest.raises(ValueError, match="would need"):
        limited.start(values)
    assert not [p for p in (tmp_path / "runs").iterdir() if p.name != "uploads"]  # nothing started, no folder left
    small = limited.check_memory({**values, "batch_size": 2, "num_frames": 8, "height": 32, "width": 32})
    assert small.total < 16 * 2**30
