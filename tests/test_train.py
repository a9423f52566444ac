"""The trainer: learns motion, resumes bit-exactly after a kill or a stop, runs under torchrun,
stops on a non-finite loss, survives SIGKILL at random moments, fine-tunes with frozen stages.

Every run is a tiny ST-MANet (R10, base width 4, 3-frame stem) on 8-frame 32x32 clips of the
generated motion-rhythm videos in conftest (classes differ only in how fast a square moves).
"""
from __future__ import annotations

import dataclasses
import json
import math
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import core.train as train_module
from core.checkpoint import load_checkpoint, load_training_state, recover_checkpoint_swap, swap_in_checkpoint
from core.train import TrainConfig, train
from conftest import ROOT, one_thread_env

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(data: Path, run_dir: Path, **changes) -> TrainConfig:
    """4 epochs of 2 steps (batch 4), dropout on (so resume must restore the RNG stream),
    validation at the last epoch only."""
    values = dict(
        run_dir=str(run_dir), data_layout="list", data_root=str(data), train_list=str(data / "train.txt"),
        val_list=str(data / "val.txt"), class_list=str(data / "classes.txt"), model="stmanet_r10", base_width=4,
        stem_temporal_kernel=3, num_frames=8, stride=1, height=32, width=32, crop_scale=(0.8, 1.0),
        max_val_windows=2, epochs=4, batch_size=4, max_steps_per_epoch=2, optimizer="sgd", lr=0.05,
        lr_schedule="cosine", val_every=4, num_workers=0, show_progress=False, seed=3,
    )
    return TrainConfig(**{**values, **changes})


def cli_args(cfg: TrainConfig) -> list[str]:
    """`python -m core.train` flags for every field of `cfg` that differs from the default."""
    args = []
    for f in dataclasses.fields(TrainConfig):
        value, default = getattr(cfg, f.name), TrainConfig.__dataclass_fields__[f.name].default
        if value == default or value is None:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, tuple):
            args += [flag, *map(str, value)]
        else:
            args += [flag, str(value)]
    return args


def start_cli(cfg: TrainConfig, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "core.train", *cli_args(cfg), *extra], cwd=ROOT, env=one_thread_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(str(Path(run_dir) / "checkpoint" / "model.safetensors"))


def history(run_dir) -> list[dict]:
    """Per-epoch metrics without wall-clock times."""
    state = load_training_state(Path(run_dir) / "checkpoint")
    return [{k: v for k, v in h.items() if k != "epoch_time_s"} for h in state["history"]]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def events(run_dir) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(condition, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited ({proc.returncode}) too early:\n{proc.stdout.read()}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("trainer did not get there in time")
        time.sleep(0.02)


def sigkill(proc: subprocess.Popen) -> None:
    assert proc.poll() is None, "the run had already ended: nothing was interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()


@pytest.fixture(scope="module")
def reference(rhythm_data, tmp_path_factory) -> Path:
    """The uninterrupted run every interrupted one must reproduce."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    result = train(tiny_config(rhythm_data, run_dir))
    assert result.error is None and not result.stopped and len(result.history) == 4
    return run_dir


# ------------------------------------------------------------------------------------ learning
def test_learns_motion_rhythm_above_chance(rhythm_data, tmp_path):
    """Both classes look the same in any single frame; only the speed of the motion differs."""
    cfg = tiny_config(rhythm_data, tmp_path / "run", epochs=8, max_steps_per_epoch=None, optimizer="adamw",
                      lr=3e-3, dropout=0.0, val_every=8, max_val_windows=3)
    result = train(cfg)
    final = result.history[-1]
    assert final["val_acc"] >= 0.8, result.history  # 12 held-out videos, chance 0.5
    assert final["val_mean_class_acc"] >= 0.8
    assert result.best_dir is not None and load_checkpoint(result.best_dir).class_names == ["fast", "slow"]


@pytest.mark.parametrize("frames,sampling,input_mode", [(12, "segments", "grey_diff"),
                                                         (16, "segment_pairs", "grey_pair_diff")])
def test_gesture_recipe_options_learn_motion_rhythm(rhythm_data, tmp_path, frames, sampling, input_mode):
    """The default model's departures together (segment sampling, frame differences, the received
    diversity loss on stage 2's grid with a margin, warm-up and open gates) still learn, and the
    validation reports attention quality per stage. 12 segments of the 24-frame videos: with 8
    (every third frame) the fast square's period of 4 frames aliases to the slow one's speed.
    Paired frames: 8 segments, each pair's difference the square's motion over one frame."""
    cfg = tiny_config(rhythm_data, tmp_path / "run", epochs=8, num_frames=frames, max_steps_per_epoch=None,
                      optimizer="adamw", lr=3e-3, dropout=0.0, val_every=8, max_val_windows=2, sampling=sampling,
                      input_mode=input_mode, diversity_form="received", diversity_grid="first",
                      diversity_margin=0.5, diversity_warmup_epochs=2, residual_gamma_init=0.1, lambda_temporal=0.0)
    result = train(cfg)
    final = result.history[-1]
    assert final["val_acc"] >= 0.8, result.history
    quality = final["attention_quality"]["spatial"]
    assert list(quality) == ["stage 2", "stage 3", "stage 4", "stage 5"] and quality["stage 2"]["videos"] == 12
    loaded = load_checkpoint(result.checkpoint_dir)
    assert loaded.model_cfg.input_mode == input_mode and loaded.model_cfg.diversity_grid == "first"
    assert loaded.model_cfg.lambda_temporal == 0.0 and loaded.clip_cfg.sampling == sampling


# ------------------------------------------------------------------------------------ resume
def test_sigkill_after_epoch_1_then_resume_equals_uninterrupted(rhythm_data, reference, tmp_path):
    cfg = tiny_config(rhythm_data, tmp_path / "run")
    proc = start_cli(cfg)
    wait_for(lambda: (tmp_path / "run" / "checkpoint" / "config.json").exists(), proc)
    sigkill(proc)
    assert load_training_state(tmp_path / "run" / "checkpoint")["epoch"] < cfg.epochs
    done = subprocess.run([sys.executable, "-m", "core.train", *cli_args(cfg), "--resume"], cwd=ROOT,
                          env=one_thread_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_same_weights(weights(tmp_path / "run"), weights(reference))
    assert history(tmp_path / "run") == history(reference)


def test_stop_event_mid_epoch_then_resume_equals_uninterrupted(rhythm_data, reference, tmp_path):
    stop, seen = threading.Event(), []

    def on_event(event):
        seen.append(event)
        if event["event"] == "step" and (event["epoch"], event["step"]) == (2, 1):
            stop.set()

    cfg = tiny_config(rhythm_data, tmp_path / "run")
    stopped = train(cfg, callback=on_event, stop_event=stop)
    assert stopped.stopped and stopped.error is None and len(stopped.history) == 1
    state = load_training_state(tmp_path / "run" / "checkpoint")
    assert (state["epoch"], state["step_in_epoch"]) == (1, 1)  # 0-based epoch 1 = the second
    assert state["partial_correct_seen"][1] == 4  # the trained step counts in the epoch's train_acc
    assert [e["step"] for e in seen if e["event"] == "step"] == [1, 2, 1]

    finished = train(dataclasses.replace(cfg, resume=True))
    assert not finished.stopped and len(finished.history) == 4
    assert_same_weights(weights(tmp_path / "run"), weights(reference))
    assert history(tmp_path / "run") == history(reference)


def test_sigkill_at_random_moments_always_leaves_a_loadable_checkpoint(rhythm_data, tmp_path):
    """Three SIGKILLs at seeded random moments (after 1-3 steps of each restart, then 0-80 ms
    later: inside a step, a checkpoint write or a metrics write), then --resume: every kill
    leaves a loadable checkpoint (or none yet), the run finishes, and it ends exactly where an
    uninterrupted run ends."""
    cfg = tiny_config(rhythm_data, tmp_path / "run", epochs=6)  # 12 steps: more than the kills allow
    ckpt = tmp_path / "run" / "checkpoint"
    rng = np.random.default_rng(11)
    for _ in range(3):
        before = len(events(cfg.run_dir))
        proc = start_cli(cfg, "--resume")
        steps = int(rng.integers(1, 4))
        wait_for(lambda: sum(e["event"] == "step" for e in events(cfg.run_dir)[before:]) >= steps, proc)
        time.sleep(rng.uniform(0.0, 0.08))
        sigkill(proc)
        assert all(e["event"] != "done" for e in events(cfg.run_dir)[before:])  # it really was cut short
        if (ckpt / "config.json").exists():
            assert load_checkpoint(ckpt).class_names == ["fast", "slow"]  # raises if left half-written
            assert load_training_state(ckpt)["epoch"] < cfg.epochs
    done = subprocess.run([sys.executable, "-m", "core.train", *cli_args(cfg), "--resume"], cwd=ROOT,
                          env=one_thread_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["best", "checkpoint", "metrics.jsonl"]
    train(dataclasses.replace(cfg, run_dir=str(tmp_path / "reference")))
    assert_same_weights(weights(tmp_path / "run"), weights(tmp_path / "reference"))
    assert history(tmp_path / "run") == history(tmp_path / "reference")


def test_sigterm_stops_after_the_step_with_a_checkpoint(rhythm_data, reference, tmp_path):
    """What a cluster sends before it kills: the CLI stops after the current step, saves, exits
    143, and --resume continues to the uninterrupted result."""
    cfg = tiny_config(rhythm_data, tmp_path / "run")
    proc = start_cli(cfg)
    wait_for(lambda: any(e["event"] == "start" for e in events(cfg.run_dir)), proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143, proc.stdout.read()
    proc.stdout.close()
    state = load_training_state(tmp_path / "run" / "checkpoint")
    assert (state["epoch"], state["step_in_epoch"]) == (0, 1)
    train(dataclasses.replace(cfg, resume=True))
    assert_same_weights(weights(tmp_path / "run"), weights(reference))


def test_interrupted_checkpoint_swap_is_repaired(tmp_path):
    """A kill between the swap's two renames leaves no checkpoint/ but a complete .new: the next
    start puts it in place; a half-written .new (no config.json) is dropped."""
    ckpt = tmp_path / "checkpoint"
    swap_in_checkpoint(ckpt, lambda f: (f.mkdir(), (f / "config.json").write_text("1")))
    ckpt.rename(tmp_path / "checkpoint.old")
    (tmp_path / "checkpoint.new").mkdir()
    (tmp_path / "checkpoint.new" / "config.json").write_text("2")
    recover_checkpoint_swap(ckpt)
    assert (ckpt / "config.json").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    (tmp_path / "checkpoint.new").mkdir()
    (tmp_path / "checkpoint.new" / "model.safetensors").write_text("partial")
    recover_checkpoint_swap(ckpt)
    assert (ckpt / "config.json").read_text() == "2" and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


# ------------------------------------------------------------------------------------ torchrun
def test_torchrun_two_processes_on_cpu(rhythm_data, tmp_path):
    """DDP with gloo: exits 0, one checkpoint, metrics.jsonl written by rank 0 alone."""
    (tmp_path / "val.txt").write_text("".join((rhythm_data / "val.txt").read_text().splitlines(True)[::6]))
    cfg = tiny_config(rhythm_data, tmp_path / "run", epochs=2, val_every=2, val_list=str(tmp_path / "val.txt"))
    env = one_thread_env()
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "core.train", *cli_args(cfg), "--device", "cpu"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == ["best", "checkpoint", "metrics.jsonl"]
    assert load_checkpoint(run / "checkpoint").class_names == ["fast", "slow"]
    log = events(run)
    kinds = [e["event"] for e in log]
    assert kinds.count("start") == 1 and kinds.count("done") == 1 and kinds.count("epoch") == 2
    start = log[kinds.index("start")]
    assert start["world_size"] == 2 and start["steps_per_epoch"] == 2  # 24 videos / 2 ranks / batch 4 = 3, capped at 2
    assert [(e["epoch"], e["step"]) for e in log if e["event"] == "step"] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert log[-1]["error"] is None and "val_acc" in log[kinds.index("epoch", kinds.index("epoch") + 1)]


# ------------------------------------------------------------------------------------ faults
def test_nan_loss_stops_and_keeps_last_good_checkpoint(rhythm_data, tmp_path, monkeypatch):
    real_loss, calls = train_module.stmanet_loss, []

    def poisoned(*args, **kwargs):
        terms = real_loss(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:  # epoch 2, step 1
            terms.total = terms.total * float("nan")
        return terms

    monkeypatch.setattr(train_module, "stmanet_loss", poisoned)
    result = train(tiny_config(rhythm_data, tmp_path / "run", epochs=3))
    assert result.error and "loss became nan at epoch 2 step 1" in result.error
    assert not result.stopped and len(result.history) == 1
    assert result.checkpoint_dir == tmp_path / "run" / "checkpoint"
    loaded = load_checkpoint(result.checkpoint_dir)
    assert loaded.meta["training"]["epochs_completed"] == 1
    assert all(torch.isfinite(p).all() for p in loaded.model.parameters())
    assert load_training_state(result.checkpoint_dir)["epoch"] == 1
    last = events(tmp_path / "run")[-1]
    assert last["event"] == "done" and last["error"] == result.error


def test_exploding_lr_gives_nonzero_exit_and_a_message(rhythm_data, tmp_path, caplog):
    cfg = tiny_config(rhythm_data, tmp_path / "run", epochs=1, lr=1e30, val_list=None)
    code = train_module.main(cli_args(cfg))
    assert code != 0
    assert "non-finite" in caplog.text or "loss became" in caplog.text
    assert not (tmp_path / "run" / "checkpoint").exists()  # nothing good to keep


def test_resume_with_other_model_flags_is_refused(rhythm_data, tmp_path):
    cfg = tiny_config(rhythm_data, tmp_path / "run", epochs=1, val_list=None)
    train(cfg)
    with pytest.raises(train_module.TrainingError, match="base_width 4 vs 8"):
        train(dataclasses.replace(cfg, resume=True, epochs=2, base_width=8))


def test_cpu_training_keeps_freed_memory_unless_told_not_to(rhythm_data, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(train_module.runtime, "keep_freed_memory", lambda: calls.append(1) or True)
    cfg = tiny_config(rhythm_data, tmp_path / "a", epochs=1, val_list=None, max_steps_per_epoch=1)
    assert train(cfg).error is None and calls == [1]
    assert train(dataclasses.replace(cfg, run_dir=str(tmp_path / "b"), keep_freed_memory=False)).error is None
    assert calls == [1]


def test_unreadable_videos_are_reported_at_start_and_left_out(rhythm_data, tmp_path):
    (tmp_path / "broken.avi").write_bytes(b"\x00" * 1000)
    (tmp_path / "train.txt").write_text((rhythm_data / "train.txt").read_text().replace(
        "train/", f"{rhythm_data}/train/") + f"{tmp_path / 'broken.avi'} fast\n")
    cfg = tiny_config(rhythm_data, tmp_path / "run", epochs=1, val_list=None, train_list=str(tmp_path / "train.txt"))
    result = train(cfg)
    assert result.error is None
    start = events(tmp_path / "run")[0]
    assert start["train_videos"] == 24 and [u.split(":")[0] for u in start["unreadable"]] == [str(tmp_path / "broken.avi")]


# ------------------------------------------------------------------------------------ fine-tuning
def test_finetune_new_classes_with_frozen_stages(rhythm_data, tiny_checkpoint, tmp_path):
    before = load_checkpoint(tiny_checkpoint).model.state_dict()
    cfg = tiny_config(rhythm_data, tmp_path / "run", init_checkpoint=str(tiny_checkpoint), freeze_stages=2,
                      epochs=1, val_list=None)
    result = train(cfg)
    assert result.error is None
    tuned = load_checkpoint(result.checkpoint_dir)
    assert tuned.class_names == ["fast", "slow"] and tuned.model_cfg.num_classes == 2
    assert tuned.model.classifier.out_features == 2 and all(h.out_features == 2 for h in tuned.model.stage_heads)
    after = tuned.model.state_dict()
    frozen = [k for k in before if k.startswith(("stem.", "stages.0."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # weights and BN statistics
    trained = [k for k in before if k.startswith("stages.1.") and k.endswith("weight")]
    assert any(not torch.equal(before[k], after[k]) for k in trained)
    assert tuned.meta["training"]["init_classes"] == ["wave", "clap", "jump"]


# ------------------------------------------------------------------------------------ mixup
def test_mixup_loss_is_the_blend_of_the_two_labels_losses():
    from types import SimpleNamespace

    from core.model import config_by_name
    from core.train import mixed_loss, mixup_pairing

    cfg = TrainConfig(mixup_alpha=0.4, seed=7, label_smoothing=0.1)
    lam, perm = mixup_pairing(cfg, epoch=3, step=5, batch=6)
    again = mixup_pairing(cfg, epoch=3, step=5, batch=6)
    assert 0 <= lam <= 1 and sorted(perm.tolist()) == list(range(6))
    assert again[0] == lam and torch.equal(again[1], perm)  # (seed, epoch, step) alone: resumes blend alike
    assert mixup_pairing(dataclasses.replace(cfg, mixup_alpha=0.0), 3, 5, 6) is None
    assert mixup_pairing(cfg, 3, 5, 1) is None  # nothing to blend with
    logits = torch.randn(6, 4, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    out = SimpleNamespace(logits=logits, spatial_attention=[None], temporal_attention=[None], stage_logits=None)
    model_cfg = config_by_name("r3d10_baseline", num_classes=4)
    terms = mixed_loss(out, labels, (lam, perm), model_cfg, cfg, 1.0)
    by_hand = (lam * torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)
               + (1 - lam) * torch.nn.functional.cross_entropy(logits, labels[perm], label_smoothing=0.1))
    torch.testing.assert_close(terms.total, by_hand)
    terms.total.backward()  # the blend keeps the graph
    assert logits.grad is not None
    with pytest.raises(ValueError, match="mixup_alpha"):
        TrainConfig(mixup_alpha=-1)


def stopped_then_resumed(cfg: TrainConfig, run_dir: Path, at: tuple[int, int], check=lambda event: None) -> Path:
    """`cfg` run in `run_dir`, stopped after step `at` = (epoch, step) (1-based), then resumed to
    its end; `check` sees the step event it stopped at."""
    stop = threading.Event()

    def on_event(event):
        if event["event"] == "step" and (event["epoch"], event["step"]) == at:
            check(event)
            stop.set()

    parts = dataclasses.replace(cfg, run_dir=str(run_dir))
    assert train(parts, callback=on_event, stop_event=stop).stopped
    assert train(dataclasses.replace(parts, resume=True)).error is None
    return run_dir


def test_mixup_changes_training_and_resumes_as_if_uninterrupted(rhythm_data, reference, tmp_path):
    cfg = tiny_config(rhythm_data, tmp_path / "whole", mixup_alpha=0.4)
    whole = train(cfg)
    assert whole.error is None and len(whole.history) == 4
    parts = stopped_then_resumed(cfg, tmp_path / "parts", (2, 1))
    assert_same_weights(weights(parts), weights(tmp_path / "whole"))
    blended, plain = weights(tmp_path / "whole"), weights(reference)  # reference: the same run without mixup
    assert any(not torch.equal(blended[k], plain[k]) for k in plain)


def test_optimizers_use_the_fused_kernels_where_torch_has_them():
    from core.train import make_optimizer

    model = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 1), torch.nn.BatchNorm3d(4))
    for name in ("sgd", "adamw"):
        opt = make_optimizer(TrainConfig(optimizer=name, weight_decay=0.1), model)
        assert opt.defaults["fused"] is True
        assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]  # no decay on BN and biases
    ints = torch.nn.Parameter(torch.zeros(2, dtype=torch.long), requires_grad=False)
    from core.train import _fused_optimizers
    assert not _fused_optimizers([ints]) and not _fused_optimizers([])


@pytest.mark.parametrize("field,value,message", [
    ("epochs", 0, "epochs must be >= 1"), ("batch_size", -2, "batch_size must be >= 1"),
    ("lr", 0.0, "lr must be a positive number"), ("lr", float("nan"), "lr must be a positive number"),
    ("dropout", 1.0, "dropout is out of range"), ("freeze_stages", 6, "freeze_stages is out of range"),
    ("optimizer", "lamb", "optimizer must be one of sgd, adamw"), ("amp", "fp8", "amp must be one of"),
])
def test_train_config_refuses_values_out_of_range(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})
    with pytest.raises(ValueError, match="num_frames must be even"):
        TrainConfig(input_mode="grey_pair_diff", num_frames=15)


def test_the_run_model_flags_reach_the_model_config():
    cfg = TrainConfig(model="stmanet_r18", last_spatial_stride=1, input_mode="grey_diff", stem_temporal_kernel=3,
                      residual_gamma_init=0.1, dropout=0.2, diversity_last_stage=4, temporal_strides=(2, 1, 1, 1))
    model_cfg = train_module.run_model_config(cfg, 5)
    assert model_cfg.diversity_last_stage == 4 and model_cfg.temporal_strides == (2, 1, 1, 1)
    assert (model_cfg.last_spatial_stride, model_cfg.input_mode, model_cfg.stem_temporal_kernel) == (1, "grey_diff", 3)
    assert (model_cfg.residual_gamma_init, model_cfg.dropout, model_cfg.num_classes) == (0.1, 0.2, 5)


def test_temporal_strides_and_aspect_jitter_flags_parse_to_tuples():
    args = train_module.build_parser().parse_args(["--temporal-strides", "2", "1", "1", "1",
                                                   "--aspect-jitter", "0.75", "1.333"])
    cfg = train_module.config_from_args(args)
    assert cfg.temporal_strides == (2, 1, 1, 1) and cfg.clip_config().aspect_jitter == (0.75, 1.333)
    assert train_module.config_from_args(train_module.build_parser().parse_args([])).temporal_strides == (2, 2, 2, 2)


def test_weight_average_by_hand():
    from core.weight_average import WeightAverage

    model = torch.nn.BatchNorm1d(1)  # a parameter, a float buffer and an integer counter
    average = WeightAverage(model, decay=0.5)
    expected = model.weight.item()
    for n, value in enumerate([3.0, -1.0, 2.0], start=1):
        model.weight.data.fill_(value)
        model.num_batches_tracked.fill_(n)
        average.update(model)
        d = min(0.5, (1 + n) / (10 + n))  # the ramp: 2/11, 3/12, 4/13, all under the decay
        expected = d * expected + (1 - d) * value
    assert math.isclose(average.averaged["weight"].item(), expected, rel_tol=1e-6)
    assert average.averaged["num_batches_tracked"].item() == 3  # counters copied, not averaged
    with average.swapped_in(model):
        assert math.isclose(model.weight.item(), expected, rel_tol=1e-6)
    assert model.weight.item() == 2.0  # the live weights are back
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, 1.0)


def test_weight_average_saves_the_average_trains_as_before_and_resumes_exactly(rhythm_data, reference, tmp_path):
    cfg = tiny_config(rhythm_data, tmp_path / "whole", weight_average=0.5)
    assert train(cfg).error is None
    state = load_training_state(tmp_path / "whole" / "checkpoint")
    live = {k: v for k, v in state["live_weights"].items()}
    assert_same_weights(live, weights(reference))  # averaging does not change what the optimizer does
    saved = weights(tmp_path / "whole")
    assert any(not torch.equal(saved[k], live[k]) for k in live)  # the checkpoint holds the average
    assert state["average_updates"] == 8  # 4 epochs of 2 steps
    parts = stopped_then_resumed(cfg, tmp_path / "parts", (2, 1))
    assert_same_weights(weights(parts), saved)
    assert_same_weights(load_training_state(parts / "checkpoint")["live_weights"], live)
