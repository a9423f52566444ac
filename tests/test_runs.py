"""core/runs.py: one run at a time, stop, re-attach after a reload, path confinement, zip slip,
token hygiene. A fake trainer is injected so these run in a second or two."""
from __future__ import annotations

import json
import os
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from core import runs
from core.hub import PushError, push_run
from core.runs import RunBusyError, RunManager
from core.uploads import PathNotAllowedError, ZipRejectedError, extract_zip, resolve_data_path


@dataclass
class FakeResult:
    run_dir: Path
    checkpoint_dir: Path
    history: list
    stopped: bool


def _write_checkpoint(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"class_names": ["a", "b"]}))
    (folder / "model.safetensors").write_bytes(b"not really")


def make_fake_train(steps_per_epoch=5, step_s=0.02, gate: threading.Event | None = None, fail=False):
    """A stand-in for core.train.train with the same callback / metrics.jsonl contract."""

    def fake_train(cfg, callback=None, stop_event=None):
        run_dir = Path(cfg["run_dir"])
        ckpt = run_dir / "checkpoint"
        history = []
        with open(run_dir / "metrics.jsonl", "a") as fh:

            def emit(ev):
                history.append(ev)
                fh.write(json.dumps(ev) + "\n")
                fh.flush()
                if callback:
                    callback(ev)

            for epoch in range(1, cfg["epochs"] + 1):
                for step in range(1, steps_per_epoch + 1):
                    if gate is not None:
                        gate.wait(5)
                    if fail and step == 2:
                        raise RuntimeError("loss is nan (token hf_abcdefghijklmnop)")
                    time.sleep(step_s)
                    emit({"event": "step", "epoch": epoch, "step": step,
                          "steps_per_epoch": steps_per_epoch, "loss": 1.0 / step, "ce": 0.9 / step,
                          "spatial": 0.1, "temporal": 0.05, "lr": 0.01, "clips_per_s": 10.0,
                          "eta_s": 1.0})
                    if stop_event is not None and stop_event.is_set():
                        _write_checkpoint(ckpt)
                        emit({"event": "done", "stopped": True, "checkpoint_dir": str(ckpt)})
                        return FakeResult(run_dir, ckpt, history, True)
                _write_checkpoint(ckpt)
                emit({"event": "epoch", "epoch": epoch, "train_acc": 0.5, "val_acc": 0.4,
                      "val_top5": 1.0, "diversity_spatial": 0.3, "diversity_temporal": 0.2,
                      "checkpoint_dir": str(ckpt)})
            emit({"event": "done", "stopped": False, "checkpoint_dir": str(ckpt)})
            return FakeResult(run_dir, ckpt, history, False)

    return fake_train


@pytest.fixture
def roots(tmp_path):
    data = tmp_path / "data"
    (data / "set" / "a").mkdir(parents=True)
    (data / "set" / "b").mkdir(parents=True)
    return tmp_path / "runs", data


def _manager(roots, **kw):
    runs_root, data_root = roots
    kw.setdefault("config_factory", dict)
    return RunManager(runs_root, data_root, **kw)


def _cfg(data_root, epochs=2):
    return {"data_layout": "folder", "data_root": str(data_root / "set"), "epochs": epochs,
            "hub_token": "hf_shouldneverbestored"}


@pytest.fixture(autouse=True)
def _no_leftover_runs():
    yield
    # a test that fails mid-run must not leave the module-wide "one run" slot taken
    for act in list(runs._ACTIVE.values()):
        act.stop_event.set()
        act.thread.join(5)


def test_run_to_the_end_and_status(roots):
    mgr = _manager(roots, train_fn=make_fake_train())
    run_id = mgr.start(_cfg(roots[1]))
    assert mgr.wait(10)
    st = mgr.status()
    assert st["run_id"] == run_id and st["state"] == "finished"
    assert len(st["steps"]) == 10 and len(st["epochs"]) == 2
    assert st["progress"] == 1.0
    assert st["checkpoint_dir"].endswith("checkpoint")
    # the data path was confined and recorded; the secret-looking key was not recorded
    rec = json.loads((Path(st["run_dir"]) / "run.json").read_text())
    assert rec["config"]["data_root"] == str((roots[1] / "set").resolve())
    assert "hub_token" not in rec["config"]
    assert "hf_shouldneverbestored" not in (Path(st["run_dir"]) / "run.json").read_text()
    # the finished run's checkpoint is listed at once
    labels = [label for label, _ in mgr.list_checkpoints()]
    assert any(run_id in label and "finished" in label for label in labels)


def test_one_run_at_a_time_stop_and_reattach(roots):
    gate = threading.Event()
    mgr = _manager(roots, train_fn=make_fake_train(steps_per_epoch=50, gate=gate))
    run_id = mgr.start(_cfg(roots[1], epochs=3))
    with pytest.raises(RunBusyError, match=f"already going: {run_id}, started"):
        mgr.start(_cfg(roots[1]))
    # a browser reload: a new manager on the same folders sees the same run going
    mgr2 = _manager(roots, train_fn=make_fake_train())
    with pytest.raises(RunBusyError):
        mgr2.start(_cfg(roots[1]))
    gate.set()
    deadline = time.time() + 5
    while not mgr2.status()["steps"] and time.time() < deadline:
        time.sleep(0.02)
    st = mgr2.status()
    assert st["run_id"] == run_id and st["state"] in ("running", "starting")
    assert st["steps"] and 0 < st["progress"] < 1
    assert mgr2.stop() is True
    assert mgr.wait(10)
    st = mgr2.status(run_id)
    assert st["state"] == "stopped"
    assert (Path(st["checkpoint_dir"]) / "config.json").is_file()
    assert st["steps"][-1]["step"] < 50  # ended early, after the current step
    # a third manager after everything ended re-reads the finished state from disk
    st3 = _manager(roots).status()
    assert st3["run_id"] == run_id and st3["state"] == "stopped" and st3["steps"]
    # and a new run can start now
    mgr3 = _manager(roots, train_fn=make_fake_train())
    mgr3.start(_cfg(roots[1], epochs=1))
    assert mgr3.wait(10)
    assert mgr3.status()["state"] == "finished"


def test_failed_run_is_reported_without_secrets(roots):
    mgr = _manager(roots, train_fn=make_fake_train(fail=True))
    mgr.start(_cfg(roots[1]))
    assert mgr.wait(10)
    st = mgr.status()
    assert st["state"] == "failed"
    assert "loss is nan" in st["error"] and "hf_abcdefghijklmnop" not in st["error"]


def test_interrupted_run_is_reported(roots):
    """A record that says running, from a process that is gone: shown as interrupted."""
    runs_root, data_root = roots
    run_dir = runs_root / "20200101-000000-dead"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps(
        {"run_id": run_dir.name, "state": "running", "pid": 2**22 + 12345, "run_dir": str(run_dir),
         "started": "then", "config": {"epochs": 2}}))
    mgr = _manager(roots, train_fn=make_fake_train())
    assert mgr.status()["state"] == "interrupted"
    mgr.start(_cfg(data_root, epochs=1))  # not busy
    assert mgr.wait(10)


def test_bad_paths_in_config_are_refused(roots, tmp_path):
    mgr = _manager(roots, train_fn=make_fake_train())
    for bad in ("../outside", "/etc", str(tmp_path)):
        cfg = _cfg(roots[1])
        cfg["data_root"] = bad
        with pytest.raises(PathNotAllowedError):
            mgr.start(cfg)
    cfg = _cfg(roots[1])
    cfg["init_checkpoint"] = "/etc"
    with pytest.raises(PathNotAllowedError, match="starting checkpoint"):
        mgr.start(cfg)
    assert mgr.status()["state"] == "idle"


def test_resolve_data_path_confinement(tmp_path):
    root = tmp_path / "root"
    (root / "videos" / "a").mkdir(parents=True)
    (root / "list.txt").write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("s")
    (root / "escape").symlink_to(outside)
    (root / "inside_link").symlink_to(root / "videos")

    assert resolve_data_path("videos", root) == (root / "videos").resolve()
    assert resolve_data_path(str(root / "videos" / "a"), root) == (root / "videos/a").resolve()
    assert resolve_data_path("videos/../list.txt", root, kind="file").name == "list.txt"
    assert resolve_data_path("inside_link", root) == (root / "videos").resolve()
    for bad in ("../outside", "videos/../../outside", str(outside), "/etc/passwd", "/",
                "escape", "escape/secret.txt"):
        with pytest.raises(PathNotAllowedError, match="outside the data root"):
            resolve_data_path(bad, root)
    with pytest.raises(PathNotAllowedError, match="does not exist"):
        resolve_data_path("nope", root)
    with pytest.raises(PathNotAllowedError, match="not a folder"):
        resolve_data_path("list.txt", root, kind="dir")
    with pytest.raises(PathNotAllowedError, match="no path"):
        resolve_data_path("  ", root)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_extract_zip_ok_and_wrapper_folder(tmp_path):
    z = _zip(tmp_path / "d.zip", {"mydata/wave/1.mp4": b"x" * 10, "mydata/clap/2.mp4": b"y" * 10,
                                  "__MACOSX/mydata/._1.mp4": b"junk"})
    folder = extract_zip(z, tmp_path / "up")
    assert folder.name == "mydata"
    assert sorted(p.name for p in folder.iterdir()) == ["clap", "wave"]
    assert (folder / "wave" / "1.mp4").read_bytes() == b"x" * 10
    assert folder.resolve().is_relative_to((tmp_path / "up").resolve())


@pytest.mark.parametrize("name", ["../evil.mp4", "a/../../evil.mp4", "/abs/evil.mp4",
                                  "C:/evil.mp4", "..\\evil.mp4"])
def test_extract_zip_refuses_zip_slip(tmp_path, name):
    z = _zip(tmp_path / "slip.zip", {"a/1.mp4": b"x", "b/2.mp4": b"y", name: b"evil"})
    dest = tmp_path / "up"
    with pytest.raises(ZipRejectedError, match="unsafe entry"):
        extract_zip(z, dest)
    assert not (tmp_path / "evil.mp4").exists()
    assert not any(dest.rglob("*.mp4"))


def test_extract_zip_refuses_symlinks_bombs_and_junk(tmp_path):
    z = tmp_path / "link.zip"
    with zipfile.ZipFile(z, "w") as zf:
        info = zipfile.ZipInfo("a/link.mp4")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
        zf.writestr("b/2.mp4", b"y")
    with pytest.raises(ZipRejectedError, match="symbolic link"):
        extract_zip(z, tmp_path / "up")
    big = _zip(tmp_path / "big.zip", {"a/1.mp4": b"\0" * 300_000, "b/2.mp4": b"y"})
    with pytest.raises(ZipRejectedError, match="zip bomb"):
        extract_zip(big, tmp_path / "up")
    with pytest.raises(ZipRejectedError, match="more than"):
        extract_zip(big, tmp_path / "up", max_bytes=1000, max_ratio=1e9)
    with pytest.raises(ZipRejectedError, match="entries"):
        extract_zip(big, tmp_path / "up", max_files=1)
    one = _zip(tmp_path / "one.zip", {"only/1.mp4": b"x"})
    with pytest.raises(ZipRejectedError, match="one folder per class"):
        extract_zip(one, tmp_path / "up")
    notzip = tmp_path / "n.zip"
    notzip.write_bytes(b"hello")
    with pytest.raises(ZipRejectedError, match="not a zip"):
        extract_zip(notzip, tmp_path / "up")


def test_push_run_passes_token_only_to_push_and_masks_it(tmp_path, caplog):
    ckpt = tmp_path / "runs" / "r1" / "checkpoint"
    _write_checkpoint(ckpt)
    token = "hf_SECRETSECRETSECRET123"
    seen = {}

    def fake_push(folder, repo_id, tok, api=None):
        seen.update(folder=folder, repo_id=repo_id, token=tok)
        return f"https://huggingface.co/{repo_id}"

    caplog.set_level("DEBUG")
    url = push_run(ckpt, "me/my-model", token, allowed_roots=[tmp_path / "runs"], push_fn=fake_push)
    assert url == "https://huggingface.co/me/my-model" and seen["token"] == token

    def failing_push(folder, repo_id, tok, api=None):
        raise RuntimeError(f"401 unauthorized for token {tok}")

    with pytest.raises(PushError) as err:
        push_run(ckpt, "me/my-model", token, push_fn=failing_push)
    assert token not in str(err.value) and "401" in str(err.value)
    with pytest.raises(PushError, match="repo id"):
        push_run(ckpt, "../../etc", token, push_fn=fake_push)
    with pytest.raises(PushError, match="token"):
        push_run(ckpt, "me/m", "", push_fn=fake_push)
    with pytest.raises(PushError, match="cannot be pushed"):
        push_run(tmp_path, "me/m", token, allowed_roots=[tmp_path / "runs"], push_fn=fake_push)
    assert token not in caplog.text
    # nothing under the run folder mentions the token
    for p in (tmp_path / "runs").rglob("*"):
        if p.is_file():
            assert token not in p.read_text(errors="ignore")


def test_list_checkpoints_shipped_and_runs(tmp_path):
    shipped = tmp_path / "checkpoints"
    _write_checkpoint(shipped / "gestures_r18")
    (shipped / "empty").mkdir()
    mgr = RunManager(tmp_path / "runs", None, checkpoints_root=shipped)
    assert [label for label, _ in mgr.list_checkpoints()] == ["gestures_r18"]
    with pytest.raises(PathNotAllowedError, match="no data root"):
        mgr.resolve_data_path("x")
    assert os.path.isdir(tmp_path / "runs")


def test_resume_a_stopped_run_in_the_same_folder(roots):
    gate = threading.Event()
    calls = []
    fake = make_fake_train(steps_per_epoch=50, gate=gate)

    def recording(cfg, callback=None, stop_event=None):
        calls.append(dict(cfg))
        return fake(cfg, callback, stop_event)

    mgr = _manager(roots, train_fn=recording)
    with pytest.raises(ValueError, match="no run to resume"):
        mgr.resume()
    run_id = mgr.start(_cfg(roots[1], epochs=1))
    with pytest.raises(RunBusyError):
        mgr.resume()
    mgr.stop()
    gate.set()
    assert mgr.wait(10) and mgr.status()["state"] == "stopped"
    first_elapsed = mgr.status()["elapsed_s"]
    time.sleep(1.5)  # the run stands stopped: that time is not training time
    assert mgr.resume() == run_id
    assert mgr.wait(10)
    st = mgr.status()
    assert st["run_id"] == run_id and st["state"] == "finished" and st["resumed"] == 1
    assert first_elapsed <= st["elapsed_s"] < first_elapsed + 1.4, (first_elapsed, st["elapsed_s"])
    assert calls[1]["resume"] is True and calls[1]["run_dir"] == calls[0]["run_dir"]
    assert calls[1]["data_root"] == calls[0]["data_root"]
    with pytest.raises(ValueError, match="only an interrupted, stopped or failed"):
        mgr.resume(run_id)


def test_push_run_through_core_push_to_hub_into_a_local_folder(tmp_path, caplog):
    """The real core.checkpoint.push_to_hub with an API object that writes to a folder standing
    in for the Hub: the files arrive, the token is used by nothing else and written nowhere."""
    import shutil as _shutil

    import torch

    from core.checkpoint import load_checkpoint, save_checkpoint
    from core.data.clips import ClipConfig
    from core.model import build_model, config_by_name

    torch.manual_seed(0)
    ckpt = tmp_path / "runs" / "r1" / "checkpoint"
    save_checkpoint(ckpt, build_model(config_by_name("stmanet_r10", num_classes=2, base_width=4)).eval(),
                    ClipConfig(num_frames=4, stride=1, height=32, width=32), ["a", "b"])
    (ckpt / "training_state.pt").write_bytes(b"optimizer state: never pushed")
    hub = tmp_path / "hub"
    token = "hf_LOCALFOLDERTOKEN1234567"

    class FolderApi:
        def create_repo(self, repo_id, **kw):
            (hub / repo_id).mkdir(parents=True, exist_ok=True)

        def upload_folder(self, repo_id, folder_path, ignore_patterns=(), **kw):
            import fnmatch

            for f in Path(folder_path).iterdir():
                if not any(fnmatch.fnmatch(f.name, p) for p in ignore_patterns or ()):
                    _shutil.copy2(f, hub / repo_id / f.name)

    caplog.set_level("DEBUG")
    url = push_run(ckpt, "me/tiny", token, allowed_roots=[tmp_path / "runs"], api=FolderApi())
    assert url.endswith("me/tiny")
    pushed = hub / "me" / "tiny"
    assert {"model.safetensors", "config.json", "README.md"} <= {p.name for p in pushed.iterdir()}
    assert not (pushed / "training_state.pt").exists()
    assert load_checkpoint(pushed).class_names == ["a", "b"]
    assert token not in caplog.text
    for p in tmp_path.rglob("*"):
        if p.is_file():
            assert token.encode() not in p.read_bytes(), p


def test_unpacked_uploads_no_run_uses_are_pruned(roots, tmp_path):
    mgr = _manager(roots, train_fn=make_fake_train())
    used = mgr.extract_zip(_zip(tmp_path / "used.zip", {"wave/1.mp4": b"x", "clap/2.mp4": b"y"}))
    two = {"wave/1.mp4": b"x", "clap/2.mp4": b"y"}
    orphan = mgr.extract_zip(_zip(tmp_path / "orphan.zip", two))
    fresh = mgr.extract_zip(_zip(tmp_path / "fresh.zip", two))
    run_id = mgr.start({**_cfg(roots[1]), "data_root": str(used)})
    assert mgr.wait(10) and mgr.status(run_id)["state"] == "finished"
    an_hour_ago = time.time() - runs.UPLOAD_GRACE_S - 60
    for folder in (used, orphan):
        os.utime(folder, (an_hour_ago, an_hour_ago))
    # the next upload prunes the old folder no run reads; the used one (resumable) and the
    # fresh one (perhaps about to start a run) stay
    newest = mgr.extract_zip(_zip(tmp_path / "new.zip", two))
    assert not orphan.exists()
    assert used.exists() and fresh.exists() and newest.exists()
    assert sorted(mgr.prune_uploads(grace_s=0)) == sorted([fresh, newest])
    assert used.exists()


def test_uploads_space_is_capped_and_refused_uploads_are_discarded_at_once(roots, tmp_path):
    two = {"wave/1.mp4": b"x" * 4000, "clap/2.mp4": b"y" * 4000}
    mgr = _manager(roots, train_fn=make_fake_train(), max_uploads_bytes=20_000)
    first = mgr.extract_zip(_zip(tmp_path / "a.zip", two))
    second = mgr.extract_zip(_zip(tmp_path / "b.zip", two))  # 16 kB of 20 kB used
    with pytest.raises(ZipRejectedError, match="more than"):
        mgr.extract_zip(_zip(tmp_path / "c.zip", two))  # would pass 20 kB: refused while unpacking
    assert sorted(p.name for p in mgr.uploads_root.iterdir()) == sorted([first.name, second.name])
    assert mgr.discard_upload(second) and not second.exists()
    assert not mgr.discard_upload(tmp_path / "elsewhere")  # only under uploads/
    run_id = mgr.start({**_cfg(roots[1]), "data_root": str(first)})
    assert mgr.wait(10) and mgr.status(run_id)["state"] == "finished"
    assert not mgr.discard_upload(first) and first.exists()  # a run reads it: kept for resume
    mgr.extract_zip(_zip(tmp_path / "d.zip", two))
    full = _manager(roots, max_uploads_bytes=10_000)
    with pytest.raises(ZipRejectedError, match="space for unpacked uploads .* is full"):
        full.extract_zip(_zip(tmp_path / "e.zip", two))


def test_a_stop_that_comes_after_the_last_step_is_told_the_truth(roots):
    """The run finishes its last step, then (say, during the final validation) Stop is pressed:
    the run ends "finished" and says the request came too late; once the trainer has returned,
    stop() reports that nothing was stopped."""
    last_step, release = threading.Event(), threading.Event()

    def train_fn(cfg, callback=None, stop_event=None):
        run_dir = Path(cfg["run_dir"])
        ckpt = run_dir / "checkpoint"
        callback({"event": "step", "epoch": 1, "step": 1, "steps_per_epoch": 1, "loss": 1.0})
        _write_checkpoint(ckpt)
        last_step.set()
        release.wait(5)  # the final validation: no step left to check the stop request at
        return FakeResult(run_dir, ckpt, [], False)

    mgr = _manager(roots, train_fn=train_fn)
    run_id = mgr.start(_cfg(roots[1], epochs=1))
    assert last_step.wait(5)
    assert mgr.stop() is True  # the trainer is still going: the request is taken
    release.set()
    assert mgr.wait(10)
    st = mgr.status(run_id)
    assert st["state"] == "finished" and st["message"] == "finished: the stop request came after its last step"
    assert mgr.stop() is False  # nothing left to stop
