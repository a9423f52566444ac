"""bench/: every script's --quick run prints one JSON object with the keys its README promises
(a smoke test, one thread so a loaded machine cannot stretch it), and the inference copy the
benchmarks and the Predictor use computes the same function as the model."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.model import build_model, config_by_name
from core.model.inference import optimize_for_inference
from core.model.kernels import pool_to, prepare_clip
from core.model.stmanet import STMANet
from conftest import needs_cpu_bf16

ROOT = Path(__file__).resolve().parents[1]
COMMON = {"script", "machine", "seconds"}
SCRIPTS = {
    "flops": {"variants", "stmanet_over_backbone_flops", "clip"},
    "profile_inference": {"shared_ops_ms", "added_ms", "added_gflops", "gflop_per_s", "profiled_time_ratio",
                          "flop_ratio", "top_added_ops"},
    "latency": {"models", "measured_peak", "physical_peak", "latency", "speedup_over_eager_fp32",
                "stmanet_over_backbone", "stmanet_over_backbone_dedicated", "bf16_vs_fp32", "targets"},
    "predict_e2e": {"video", "checkpoint", "runs", "speedup_optimized_over_eager", "bf16_vs_fp32", "preprocess",
                    "target_10s_video_with_maps_under_2s"},
    "train_step": {"steps", "comparisons", "device"},
    "gpu_check": {"device", "inference", "training_step", "learning"},
    "data_loading": {"loader", "model_train_step", "cache_build_s", "videos"},
}


def _check(result: dict, script: str) -> None:
    assert COMMON | SCRIPTS[script] <= set(result), sorted(COMMON | SCRIPTS[script] - set(result))
    assert result["script"] == script
    assert {"cpu_count", "torch", "threads", "loadavg_end"} <= set(result["machine"])
    assert result["machine"]["threads"] == 1


def test_a_script_runs_from_the_command_line():
    done = subprocess.run([sys.executable, "bench/flops.py", "--quick", "--threads", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    _check(json.loads(done.stdout), "flops")


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_quick_prints_its_json(script, capsys, monkeypatch):
    """Each script's main() in this process (no interpreter start-up per script)."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    module = importlib.import_module(script)
    module.main(["--quick", "--threads", "1"])
    _check(json.loads(capsys.readouterr().out), script)


def test_without_bf16_the_benchmarks_skip_its_rows_with_the_reason(capsys, monkeypatch):
    """A CPU without bf16 (forced here through core.capability's switch): every bf16 row says why
    it was not run, the fp32 rows are all there, and nothing raises."""
    monkeypatch.setenv("STMANET_NO_BF16", "1")
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    latency = importlib.import_module("latency").main(["--quick", "--threads", "1", "--batches", "1"])
    capsys.readouterr()
    bf16 = [r for r in latency["latency"] if r["precision"] == "bf16"]
    assert bf16 and all(r["skipped"] == "bf16 turned off by STMANET_NO_BF16" for r in bf16)
    assert all("gflops_cpu" in r for r in latency["latency"] if r["precision"] == "fp32")
    assert latency["measured_peak"][0]["bf16"] == {"skipped": "bf16 turned off by STMANET_NO_BF16"}
    assert latency["bf16_vs_fp32"]["stmanet_r50"]["optimized_bf16"]["skipped"]
    assert all(k.endswith("fp32") or k.endswith("fp32_1thread") for k in latency["targets"])
    e2e = importlib.import_module("predict_e2e").main(["--quick", "--threads", "1"])
    assert {r["precision"] for r in e2e["runs"]} == {"fp32"} and e2e["bf16_vs_fp32"]["skipped"]
    assert latency["machine"]["bf16_cpu"] is False and latency["machine"]["bf16_forced_off"] is True


def test_measured_peak_is_the_best_kernel_and_the_physical_estimate_has_its_assumptions(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    common = importlib.import_module("common")
    kernels = common.peak_kernels("fp32", "cpu", quick=True)
    assert {n.split()[0] for n in kernels} == {"mm", "conv1x1x1", "conv3x3x3"} and len(kernels) == 5
    samples = common.interleave({name: call for name, (call, _) in kernels.items()}, 1)
    peak = common.measured_peak(samples, kernels)
    assert peak["gflops_cpu"] == max(k["gflops_cpu"] for k in peak["kernels"].values()) > 0
    physical = common.physical_peak(1)
    if "gflops_fp32" in physical:  # a clock was found
        assert physical["cores"] == 1 and physical["fma_units_assumed"] == 2
        lanes = physical["fp32_lanes_per_fma_unit"]
        assert physical["gflops_fp32"] == pytest.approx(lanes * 2 * 2 * physical["clock_ghz"], rel=1e-2)


def test_gpu_check_quick_learns_on_generated_videos(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    result = importlib.import_module("gpu_check").main(["--quick", "--threads", "1"])
    capsys.readouterr()
    learning = result["learning"]
    assert learning["learned"], learning
    assert learning["epoch_mean_loss"][-1] < learning["epoch_mean_loss"][0] and learning["held_out_top1"] >= 0.75
    assert {r["precision"] for r in result["inference"]["stmanet_over_backbone"]} <= {"fp32", "bf16"}
    assert result["training_step"]["stmanet_clips_per_s"] > 0


@pytest.fixture(autouse=True)
def one_thread():
    """In-process checks at one thread: on a loaded 2-core machine two OpenMP threads wait on each
    other at every small op (seconds per test instead of tenths)."""
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.set_rng_state(rng)  # the scripts seed the global RNG; leave it as other tests expect


def _randomised(model):
    """BN statistics and residual gates away from their init, so folding them is tested."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("name", ["stmanet_r10", "r3d10_baseline", "stmanet_r10_sda", "stmanet_r10_tda"])
def test_inference_copy_is_the_same_function(name, channels_last):
    torch.manual_seed(0)
    model = _randomised(build_model(config_by_name(name, num_classes=5, base_width=8)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = optimize_for_inference(model, channels_last=channels_last)
    assert type(fast) is STMANet and fast.fused and not model.fused  # one class, one forward: fused blocks
    for shape in [(2, 3, 16, 64, 64), (1, 3, 17, 80, 96)]:  # odd sizes: pools that do not divide
        clip = torch.randn(*shape)
        with torch.inference_mode():
            ref, got = model(clip, return_attention=True), fast(clip, return_attention=True)
            plain = fast(clip).logits
        torch.testing.assert_close(got.logits, ref.logits, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(plain, ref.logits, atol=1e-5, rtol=1e-4)
        for a, b in zip(ref.spatial_attention + ref.temporal_attention, got.spatial_attention + got.temporal_attention):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)
        assert got.stage_shapes == ref.stage_shapes
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # original untouched


@pytest.mark.parametrize("name,input_mode,last_stride,time_kept", [
    ("stmanet_r18", "rgb", 2, False), ("stmanet_r50", "rgb", 2, False), ("stmanet_r18", "grey_diff", 2, False),
    ("stmanet_r18", "grey_diff", 1, False), ("stmanet_r18", "grey_diff", 1, True), ("stmanet_r50", "rgb", 2, True)])
def test_inference_copy_at_depths_18_and_50_and_frame_differences(name, input_mode, last_stride, time_kept):
    """Basic blocks with two per stage (18) and bottlenecks (50); the shipped model's input mode;
    stage 5 on stage 4's grid (TDA's pool into stage 5 then halves time only); time kept through
    stages 3-5 (TDA's pool then only shrinks space)."""
    torch.manual_seed(0)
    strides = (2, 1, 1, 1) if time_kept else (2, 2, 2, 2)
    model = _randomised(build_model(config_by_name(name, num_classes=5, base_width=8, input_mode=input_mode,
                                                   last_spatial_stride=last_stride, temporal_strides=strides)))
    fast = optimize_for_inference(model)
    clip = torch.randn(2, 3, 16, 64, 64)
    with torch.inference_mode():
        ref, got = model(clip, return_attention=True), fast(clip, return_attention=True)
    t4, t5 = (8, 8) if time_kept else (2, 1)
    assert ref.stage_shapes[2:] == [(t4, 4, 4), (t5, 4 // last_stride, 4 // last_stride)]
    torch.testing.assert_close(got.logits, ref.logits, atol=1e-5, rtol=1e-4)
    # with time kept the maps come from 4-8x longer sums (more time steps in every convolution and
    # query/key product), so fp32 reordering reaches a few 1e-5 on a probability
    map_atol = 1e-4 if time_kept else 1e-5
    for a, b in zip(ref.spatial_attention + ref.temporal_attention, got.spatial_attention + got.temporal_attention):
        torch.testing.assert_close(b, a, atol=map_atol, rtol=1e-4)


@needs_cpu_bf16
def test_inference_copy_under_bf16_autocast_stays_close():
    torch.manual_seed(0)
    model = _randomised(build_model(config_by_name("stmanet_r10", num_classes=5, base_width=8, residual_gamma_init=0.5)))
    fast = optimize_for_inference(model)
    clip = torch.randn(2, 3, 16, 64, 64)
    with torch.inference_mode():
        ref = model(clip).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = fast(clip, return_attention=True).logits.float()
    assert (got - ref).abs().max() <= 0.05 * ref.abs().max()


def test_inference_copy_of_torchvision_video_resnets():
    torchvision = pytest.importorskip("torchvision")
    for build in (torchvision.models.video.r3d_18, torchvision.models.video.r2plus1d_18):
        torch.manual_seed(0)
        model = _randomised(build())
        fast = optimize_for_inference(model)
        assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in fast.modules())
        clip = torch.randn(1, 3, 4, 32, 32)
        with torch.inference_mode():
            torch.testing.assert_close(fast(prepare_clip(fast, clip)), model(clip), atol=1e-5, rtol=1e-4)


def test_pool_is_the_adaptive_pool():
    x = torch.randn(2, 8, 16, 28, 28).contiguous(memory_format=torch.channels_last_3d)
    assert pool_to(x, (16, 28, 28)) is x
    assert torch.equal(pool_to(x, (8, 14, 14)), F.adaptive_avg_pool3d(x, (8, 14, 14)))  # bit-identical
    y = torch.randn(1, 4, 4, 7, 7)
    assert torch.equal(pool_to(y, (2, 4, 4)), F.adaptive_avg_pool3d(y, (2, 4, 4)))  # 7 -> 4: the pool itself
    # 7 -> 4 on channels_last: the averaging-matrix product, in fp32 and bf16, still channels_last
    for dtype, tol in ((torch.float32, 1e-6), (torch.bfloat16, 1e-2)):
        z = torch.randn(2, 16, 5, 7, 7).to(dtype).contiguous(memory_format=torch.channels_last_3d)
        pooled = pool_to(z, (2, 4, 4))
        assert pooled.dtype == dtype and pooled.is_contiguous(memory_format=torch.channels_last_3d)
        torch.testing.assert_close(pooled.float(), F.adaptive_avg_pool3d(z.float(), (2, 4, 4)), atol=tol, rtol=tol)


def test_predictor_threads_and_balanced_batches(tiny_checkpoint, make_video, tmp_path):
    from core.predict import Predictor, _balanced_batches

    assert _balanced_batches(9, 8) == [(0, 4), (4, 9)] and _balanced_batches(8, 8) == [(0, 8)]
    assert _balanced_batches(1, 8) == [(0, 1)] and _balanced_batches(17, 8) == [(0, 6), (6, 11), (11, 17)]
    video = make_video(tmp_path / "v.avi", 30)
    torch.set_num_threads(2)
    plain = Predictor(tiny_checkpoint, device="cpu", optimize=False).predict(video, batch_windows=2)
    fast = Predictor(tiny_checkpoint, device="cpu", threads=1).predict(video, batch_windows=2, with_attention=True)
    assert torch.get_num_threads() == 2  # restored after the call
    np.testing.assert_allclose(fast.window_probs, plain.window_probs, atol=1e-5)
    with pytest.raises(ValueError):
        Predictor(tiny_checkpoint, device="cpu", threads=0)
