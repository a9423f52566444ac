"""The launched app driven through gradio_client: recognise a real clip, look inside, bad files,
confinement, and a tiny fine-tuning run started, refused a second time, stopped, while 8
predictions run at once; the Hub push keeps its token out of every file."""
from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.data.video import probe_video

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

CLASSES = ["wave", "clap", "jump"]


def make_tiny_checkpoint(folder: Path, **clip_changes) -> Path:
    import torch

    from core.checkpoint import save_checkpoint
    from core.data.clips import ClipConfig
    from core.model import build_model, config_by_name

    torch.manual_seed(0)
    model = build_model(config_by_name("stmanet_r10", num_classes=3, base_width=8, residual_gamma_init=0.5))
    clip = ClipConfig(num_frames=8, stride=1, height=64, width=64, max_windows=8).replace(**clip_changes)
    save_checkpoint(folder, model.eval(), clip, CLASSES, metrics={"top1": 0.5}, data_source="random init (test)")
    return folder


def write_video(path: Path, n: int = 16, size: int = 64, seed: int = 0, speed: int = 2) -> Path:
    import cv2

    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (size, size))
    assert writer.isOpened()
    base = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    for t in range(n):
        frame = base.copy()
        x = (t * speed * 3) % (size - 12)
        frame[20:32, x : x + 12] = 255
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    from app import AppConfig, build_demo, launch_kwargs

    root = tmp_path_factory.mktemp("app")
    ckpt = make_tiny_checkpoint(root / "checkpoints" / "tiny")
    data = root / "data"
    data.mkdir()
    cfg = AppConfig(
        checkpoint=ckpt, checkpoints_dir=root / "checkpoints", runs_dir=root / "runs", data_root=data,
        examples_dir=None, max_upload_mb=5, decode_seconds=6, predict_concurrency=2,
    )
    demo = build_demo(cfg)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **launch_kwargs(cfg))
    try:
        yield {"url": url, "demo": demo, "root": root, "cfg": cfg}
    finally:
        demo.ctx.runs.stop()
        demo.ctx.runs.wait(30)
        demo.close()


@pytest.fixture
def client(app_server):
    return Client(app_server["url"], verbose=False)


def _recognise(client, path, k=3, checkpoint="tiny", maps=True):
    return client.predict(handle_file(str(path)), k, checkpoint, maps, api_name="/recognise")


def test_recognise_real_clip_and_look_inside(client, shared_data):
    clip = shared_data / "clips" / "mmaction2_tests_data_test.avi"
    label, bar, timeline, note = _recognise(client, clip, k=2)
    assert label["label"] in CLASSES
    assert len(label["confidences"]) == 2
    assert 0 < sum(c["confidence"] for c in label["confidences"]) <= 1.0001
    assert json.loads(bar["plot"])["data"][0]["type"] == "bar"
    assert "window" in note and "first 6 s" in note
    assert f"This model knows 3 classes: {', '.join(CLASSES)}." in note

    # the same session's analysis feeds the Look inside endpoints
    images = client.predict(3, api_name="/inside_frame")
    assert len(images) == 4 and all(Path(p).is_file() for p in images)
    rendered = client.predict(5, api_name="/inside_render")
    assert "| stage 3 |" in rendered[-1] and "on-motion lift" in rendered[-1]  # this video's attention quality
    whole = cv2.imread(rendered[1])  # the whole frame (BGR here), the model's view outlined, the rest dimmed
    info = probe_video(clip)
    assert abs(whole.shape[1] / whole.shape[0] - info.width / info.height) < 0.05
    b, g, r = (whole[..., k].astype(int) for k in range(3))
    assert ((b < 90) & (g > 150) & (r > 190)).sum() >= whole.shape[0]  # the yellow outline (lossy image format)
    heat, strip, curve = client.predict(4, api_name="/inside_temporal")
    assert json.loads(heat["plot"])["data"][0]["type"] == "heatmap" and Path(strip).is_file()
    video, download = client.predict(5, api_name="/export_overlay")
    video_path = video["video"] if isinstance(video, dict) else video
    assert Path(video_path).suffix in (".mp4", ".webm") and Path(video_path).stat().st_size > 0
    exported = probe_video(video_path)
    assert min(exported.width, exported.height) >= 360  # sharp when the player enlarges it
    facts_md, facts = client.predict("tiny", api_name="/checkpoint_facts")
    assert facts["classes"] == CLASSES and facts["params"] > 0 and facts["gflops"] > 0
    assert "GFLOPs per clip" in facts_md


def test_bad_inputs_give_clear_messages(client, tmp_path):
    # Look inside before any analysis in this session: a message, not a crash
    with pytest.raises(Exception, match="Recognise a video first"):
        client.predict(5, api_name="/export_overlay")
    bad = {
        "text.mp4": b"this is not a video\n" * 10,
        "random.mp4": np.random.default_rng(0).integers(0, 255, 4000, dtype=np.uint8).tobytes(),
        "empty.mp4": b"",
    }
    for name, data in bad.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(Exception) as err:
            _recognise(client, p)
        msg = str(err.value)
        assert name in msg or "empty" in msg, msg
        assert "Traceback" not in msg and "/gradio/" not in msg
    # a truncated real video: recognised from what is left, or refused in words
    real = write_video(tmp_path / "whole.mp4", n=40)
    cut = tmp_path / "truncated.mp4"
    cut.write_bytes(real.read_bytes()[: real.stat().st_size // 2])
    try:
        assert _recognise(client, cut)[0]["label"] in CLASSES
    except Exception as exc:  # noqa: BLE001
        assert "Traceback" not in str(exc) and "truncated.mp4" in str(exc), str(exc)
    # unicode and spaces in the name work
    odd = write_video(tmp_path / "vidéo d'essai 1.mp4")
    label, _, _, note = _recognise(client, odd)
    assert label["label"] in CLASSES and "vidéo d'essai 1.mp4" in note
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * (6 * 1024 * 1024))
    with pytest.raises(Exception, match="MB"):
        _recognise(client, big)
    ok = write_video(tmp_path / "ok.mp4")
    with pytest.raises(Exception, match="not one of this server's checkpoints"):
        _recognise(client, ok, checkpoint="../../etc")


def _zip_dataset(tmp_path: Path) -> Path:
    z = tmp_path / "gestures.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for c, cls in enumerate(("slow", "fast")):
            for i in range(4):
                v = write_video(tmp_path / f"{cls}{i}.mp4", n=16, seed=10 * c + i, speed=1 + 3 * c)
                zf.write(v, f"mydata/{cls}/{cls}{i}.mp4")
    return z


def _start(client, **kw):
    args = dict(source="Upload a zip", zip_file=None, folder="", layout="ucf101", layout_root="",
                splits_dir="", train_list="", val_list="", class_list="", split=1, start_from="tiny",
                epochs=1, lr=0.001, batch_size=2, frames=8, freeze=1, optimizer="adamw")
    args.update(kw)
    return client.predict(*args.values(), api_name="/finetune_start")


def _wait_status(client, states, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = client.predict(api_name="/finetune_status")
        if st["state"] in states:
            return st
        time.sleep(0.3)
    raise AssertionError(f"run never reached {states}: {st}")


def test_api_outputs_are_named_and_checkpoint_parameters_take_any_listed_key(client):
    info = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    for name, endpoint in info.items():
        for out in endpoint["returns"]:
            label = out.get("label") or ""
            assert label and not label.startswith("value_") and label not in ("1st", "2nd"), (name, label)
        for param in endpoint["parameters"]:
            if param.get("parameter_name") == "checkpoint":  # runs that finish later are valid too
                assert "enum" not in param["type"] and "/list_checkpoints" in param["type"]["description"]
    assert info["/finetune_status"]["returns"][0]["label"] == "Run status"


def test_finetune_confinement(client):
    with pytest.raises(Exception, match="outside the data root"):
        _start(client, source="Folder on the server", folder="../")
    with pytest.raises(Exception, match="outside the data root"):
        _start(client, source="Folder on the server", folder="/etc")
    with pytest.raises(Exception, match="Upload a zip"):
        _start(client)


def test_refused_finetune_requests_leave_no_unpacked_upload(client, app_server, tmp_path):
    """Every field is checked before the zip is unpacked, and what a refused request unpacked is
    deleted at once."""
    ctx = app_server["demo"].ctx
    uploads = ctx.runs.uploads_root
    before = set(uploads.iterdir()) if uploads.is_dir() else set()
    z = _zip_dataset(tmp_path)
    for bad in (dict(lr=0), dict(epochs=0), dict(batch_size=0), dict(frames=500), dict(start_from="nope")):
        with pytest.raises(Exception):
            _start(client, zip_file=handle_file(str(z)), **bad)
    after = set(uploads.iterdir()) if uploads.is_dir() else set()
    assert after == before


def test_a_run_too_big_for_the_memory_limit_is_refused_with_its_estimate(client, app_server, tmp_path,
                                                                        monkeypatch):
    """batch x frames is checked as memory (core.memory's estimate) against the server's limit,
    before the zip is unpacked; the same request fits when the limit allows it."""
    ctx = app_server["demo"].ctx
    uploads = ctx.runs.uploads_root
    before = set(uploads.iterdir()) if uploads.is_dir() else set()
    monkeypatch.setattr(ctx.runs, "max_run_memory_bytes", 40 * 2**20)
    with pytest.raises(Exception, match=r"this run would need about .* GiB \(activations .*one run may use.*"
                                        r"lower the batch size or the frames per clip.*STMANET_MAX_RUN_MEMORY_MB"):
        _start(client, zip_file=handle_file(str(_zip_dataset(tmp_path))), batch_size=256, frames=128)
    assert (set(uploads.iterdir()) if uploads.is_dir() else set()) == before


def test_finetune_start_refuse_second_predict_meanwhile_stop(client, app_server, tmp_path, shared_data, caplog):
    ctx = app_server["demo"].ctx
    clip = shared_data / "clips" / "paddlevideo_example.avi"
    baseline = _recognise(client, clip, maps=False)[0]

    z = _zip_dataset(tmp_path)
    md = _start(client, zip_file=handle_file(str(z)), epochs=50)[0]
    assert "Run" in md
    st = _wait_status(client, ("running",))
    run_id = st["run_id"]
    with pytest.raises(Exception, match=f"already going: {run_id}"):
        _start(client, zip_file=handle_file(str(z)), epochs=1)

    # 8 predictions at once while the run trains: all answer, all the same answer
    clients = [Client(app_server["url"], verbose=False) for _ in range(8)]
    with cf.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda c: _recognise(c, clip, maps=False)[0], clients))
    for r in results:
        assert r["label"] == baseline["label"]
        np.testing.assert_allclose([c["confidence"] for c in r["confidences"]],
                                   [c["confidence"] for c in baseline["confidences"]], atol=1e-4)

    # a reload: a new session sees the same run
    st = Client(app_server["url"], verbose=False).predict(api_name="/finetune_status")
    assert st["run_id"] == run_id and st["state"] in ("running", "stopping")

    client.predict(api_name="/finetune_stop")
    st = _wait_status(client, ("stopped", "finished", "failed"), timeout=60)
    assert st["state"] == "stopped", st
    assert st["checkpoint_dir"]
    # the run's checkpoint is in the picker at once, and it answers
    assert f"run/{run_id}" in [key for _, key in ctx.checkpoint_choices()]
    label = _recognise(client, clip, checkpoint=f"run/{run_id}", maps=False)[0]
    assert label["label"] in ("slow", "fast")

    # resume it in the same folder, and stop it again
    client.predict(api_name="/finetune_resume")
    st2 = _wait_status(client, ("running", "finished"))
    assert st2["run_id"] == run_id
    client.predict(api_name="/finetune_stop")
    st = _wait_status(client, ("stopped", "finished", "failed"), timeout=60)
    assert st["state"] in ("stopped", "finished") and st["resumed"] == 1, st

    # what the public sees and what a push publishes: no process id, no server path
    root = str(app_server["root"])
    assert "pid" not in st and root not in json.dumps(st), st
    assert st["checkpoint_dir"].startswith(f"runs/{run_id}/")
    facts = client.predict(f"run/{run_id}", api_name="/checkpoint_facts")[1]
    assert root not in json.dumps(facts) and facts["training"]["run_dir"].endswith(run_id)
    run_checkpoint = app_server["root"] / "runs" / run_id / "checkpoint"
    for published in ("config.json", "README.md"):
        assert root not in (run_checkpoint / published).read_text(), published

    # push it: the token reaches only push_to_hub and is cleared from the page
    import core.hub as checkpoint_mod  # push_run's default push (core.checkpoint.push_to_hub)

    token = "hf_TESTTOKENabcdefghijklmnop"
    seen = {}

    def fake_push(folder, repo_id, tok, api=None, **kw):
        seen.update(folder=str(folder), repo=repo_id, token=tok)
        return f"https://huggingface.co/{repo_id}"

    caplog.set_level(logging.DEBUG)
    orig = checkpoint_mod.push_to_hub
    checkpoint_mod.push_to_hub = fake_push
    try:
        msg, token_box = client.predict(f"run/{run_id}", "me/stmanet-test", token, api_name="/push_to_hub")
    finally:
        checkpoint_mod.push_to_hub = orig
    assert "huggingface.co/me/stmanet-test" in msg and token_box == ""
    assert seen["token"] == token and seen["folder"].endswith("checkpoint")
    assert token not in caplog.text
    for p in Path(st["run_dir"]).rglob("*"):
        if p.is_file() and p.suffix in (".json", ".jsonl", ".md", ".txt", ".log"):
            assert token not in p.read_text(errors="ignore"), p


def test_app_without_checkpoint_says_so(tmp_path):
    from app import AppConfig, build_demo

    cfg = AppConfig(checkpoint=None, checkpoints_dir=tmp_path / "none", runs_dir=tmp_path / "runs",
                    data_root=None, examples_dir=None)
    demo = build_demo(cfg)
    assert "No model" in demo.no_checkpoint.value
    from app.recognise import run_prediction

    with pytest.raises(ValueError, match="No model checkpoint was found"):
        run_prediction(demo.ctx, str(write_video(tmp_path / "v.mp4")), 3, None)


def test_unusable_start_checkpoint_is_named_on_the_page_and_in_the_log(tmp_path, caplog):
    """STMANET_CHECKPOINT pointing at a folder with a pickled model.pt: a banner and a log warning
    name the folder and the reason, and which model is served instead (no server paths)."""
    import shutil

    from app import AppConfig, build_demo

    shipped = make_tiny_checkpoint(tmp_path / "checkpoints" / "tiny")
    pickled = tmp_path / "mine"
    pickled.mkdir()
    shutil.copy(shipped / "config.json", pickled / "config.json")
    (pickled / "model.pt").write_bytes(b"not loaded")
    cfg = AppConfig(checkpoint=pickled, checkpoints_dir=tmp_path / "checkpoints", runs_dir=tmp_path / "runs",
                    data_root=None, examples_dir=None)
    with caplog.at_level(logging.WARNING, logger="app"):
        demo = build_demo(cfg, warm_up=False)
    banner = demo.no_checkpoint.value
    assert "'mine' cannot be used" in banner and "model.pt is a pickle" in banner and "serving 'tiny'" in banner
    assert str(tmp_path) not in banner
    assert any("'mine' cannot be used" in r.getMessage() for r in caplog.records)
    missing = AppConfig(checkpoint=tmp_path / "gone", checkpoints_dir=tmp_path / "checkpoints",
                        runs_dir=tmp_path / "runs", data_root=None, examples_dir=None)
    assert "does not exist" in build_demo(missing, warm_up=False).no_checkpoint.value
    served = AppConfig(checkpoint=shipped, checkpoints_dir=tmp_path / "checkpoints", runs_dir=tmp_path / "runs",
                       data_root=None, examples_dir=None)
    assert build_demo(served, warm_up=False).no_checkpoint.value == ""


def test_build_config_for_each_data_source(tmp_path):
    """The Fine-tune tab's inputs -> TrainConfig fields, with every path confined to the data root."""
    from app import AppConfig, AppContext
    from app.finetune import SOURCES, build_config
    from core.uploads import PathNotAllowedError

    ckpt = make_tiny_checkpoint(tmp_path / "checkpoints" / "tiny")
    data = tmp_path / "data"
    (data / "mine" / "a").mkdir(parents=True)
    (data / "mine" / "b").mkdir(parents=True)
    (data / "ucf" / "videos").mkdir(parents=True)
    (data / "ucf" / "splits").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    ctx = AppContext(AppConfig(checkpoint=ckpt, checkpoints_dir=tmp_path / "checkpoints",
                               runs_dir=tmp_path / "runs", data_root=data, examples_dir=None))
    common = dict(start_from="tiny", epochs=2, lr=0.01, batch=4, frames=8, freeze=2, optimizer="sgd")

    def cfg(source, folder="", layout="ucf101", root="", splits="", train="", val="", classes="", **kw):
        args = {**common, **kw}
        return build_config(ctx, source, None, folder, layout, root, splits, train, val, classes, 1,
                            args["start_from"], args["epochs"], args["lr"], args["batch"], args["frames"],
                            args["freeze"], args["optimizer"])

    v = cfg(SOURCES[1], folder="mine")
    assert v["data_layout"] == "folder" and v["data_root"] == str((data / "mine").resolve())
    assert v["init_checkpoint"] == str(ckpt.resolve()) and v["height"] == 64 and v["freeze_stages"] == 2
    v = cfg(SOURCES[2], root="ucf/videos", splits="ucf/splits")
    assert v["data_layout"] == "ucf101" and v["splits_dir"] == str((data / "ucf" / "splits").resolve())
    with pytest.raises(PathNotAllowedError, match="outside the data root"):
        cfg(SOURCES[2], root="ucf/videos", splits=str(tmp_path / "elsewhere"))
    with pytest.raises(PathNotAllowedError, match="outside the data root"):
        cfg(SOURCES[1], folder="mine/../../elsewhere")
    with pytest.raises(ValueError, match="epochs"):
        cfg(SOURCES[1], folder="mine", epochs=0)
    with pytest.raises(ValueError, match="not one of this server's checkpoints"):
        cfg(SOURCES[1], folder="mine", start_from="/etc")
    v = cfg(SOURCES[1], folder="mine", start_from="new: ST-MANet-10, width 16 (from scratch)")
    assert v["model"] == "stmanet_r10" and "init_checkpoint" not in v
    make_tiny_checkpoint(tmp_path / "checkpoints" / "segments", sampling="segments", motion_crop=True)
    v = cfg(SOURCES[1], folder="mine", start_from="segments")  # fine-tunes on clips cut as it was trained
    assert v["sampling"] == "segments" and v["motion_crop"] is True


def test_mismatched_checkpoint_gives_a_message(client, app_server, tmp_path):
    """A checkpoint whose config says 5 classes but whose weights have 3: named, not a crash."""
    import shutil

    src = app_server["root"] / "checkpoints" / "tiny"
    bad = app_server["root"] / "checkpoints" / "mismatch"
    shutil.copytree(src, bad)
    meta = json.loads((bad / "config.json").read_text())
    meta["model"]["num_classes"] = 5
    meta["class_names"] = ["a", "b", "c", "d", "e"]
    (bad / "config.json").write_text(json.dumps(meta))
    try:
        with pytest.raises(Exception) as err:
            _recognise(client, write_video(tmp_path / "v.mp4"), checkpoint="mismatch")
        msg = str(err.value)
        assert "mismatch" in msg and "Traceback" not in msg, msg
    finally:
        shutil.rmtree(bad)


def test_handler_turns_failures_into_messages(caplog):
    import gradio as gr

    from app.context import handler
    from core.checkpoint import CheckpointError
    from core.data.video import VideoError

    @handler
    def boom(exc):
        raise exc

    with pytest.raises(gr.Error, match="no frames in x.mp4"):
        boom(VideoError("no frames in /tmp/gradio/0123456789abcdef0123/x.mp4"))
    with pytest.raises(gr.Error, match="classes differ"):
        boom(CheckpointError("classes differ"))
    caplog.set_level(logging.ERROR)
    with pytest.raises(gr.Error) as err:
        boom(RuntimeError("internal detail hf_abcdefghijklmnopq"))
    assert "Something went wrong" in str(err.value) and "internal detail" not in str(err.value)
    assert "internal detail" in caplog.text and "Traceback" in caplog.text  # logged on the server


def test_predictions_run_on_the_configured_threads(tmp_path, monkeypatch):
    from app.config import AppConfig
    from app.context import AppContext

    ckpt = make_tiny_checkpoint(tmp_path / "checkpoints" / "tiny")
    monkeypatch.delenv("STMANET_THREADS", raising=False)
    monkeypatch.setattr("app.config._usable_cpus", lambda: 16)
    monkeypatch.setenv("STMANET_PREDICT_CONCURRENCY", "2")
    assert AppConfig.from_env().predict_threads == 8  # the CPUs split between concurrent predictions
    assert AppConfig.from_env(predict_concurrency=4).predict_threads == 4
    monkeypatch.setattr("app.config._usable_cpus", lambda: 2)
    assert AppConfig.from_env(predict_concurrency=4).predict_threads == 1
    for value, expected in (("3", 3), ("auto", None), ("0", None), ("junk", 1)):
        monkeypatch.setenv("STMANET_THREADS", value)
        assert AppConfig.from_env().predict_threads == expected
    ctx = AppContext(AppConfig(checkpoint=ckpt, checkpoints_dir=tmp_path / "checkpoints",
                               runs_dir=tmp_path / "runs", examples_dir=None, predict_threads=2))
    assert ctx.predictor("tiny").threads == 2


def test_diversity_reading_names_degenerate_maps_and_shows_this_videos_quality(tiny_checkpoint, tmp_path):
    """A low stage similarity is only called good when no map is degenerate; the reading always
    carries this video's concentration and lift per stage."""
    from app.inside import diversity_views
    from app.recognise import Analysis
    from core.predict import Predictor

    frames = np.full((16, 64, 64, 3), 90, np.uint8)
    frames[::2, 10:30, 30:50] = 240
    pred = Predictor(tiny_checkpoint).predict_frames(frames, fps=10.0, with_attention=True)
    _, _, reading = diversity_views(Analysis("tiny", "square", pred))
    assert "| stage 2 |" in reading and "on-motion lift" in reading
    assert ("not evidence" in reading) == bool(pred.attention_warnings)
    pred.attention_warnings = ["Spatial attention at stage 2 is fixed on this checkpoint's held-out videos (...)."]
    _, _, reading = diversity_views(Analysis("tiny", "square", pred))
    assert "not evidence" in reading and "stage 2 is fixed" in reading
    assert "what the diversity losses ask for" not in reading


def test_the_note_says_plainly_when_a_video_is_unfamiliar():
    from types import SimpleNamespace

    from app.recognise import note_markdown
    from core.predict import UNFAMILIAR

    pred = SimpleNamespace(timings={}, window_times=[(0, 1)], num_frames_used=10, fps=10.0, class_names=CLASSES,
                           notes=[UNFAMILIAR], familiarity={"score": 0.41, "threshold": 0.73, "familiar": False})
    text = note_markdown(pred, 6, "cricket.gif")
    assert text.startswith(f"**Unfamiliar video: {UNFAMILIAR}** (similarity to the training videos 0.41, below 0.73).")
    assert text.count(UNFAMILIAR) == 1
    pred.familiarity, pred.notes = {"score": 0.9, "threshold": 0.73, "familiar": True}, []
    assert "Unfamiliar" not in note_markdown(pred, 6, "wave.mp4")
    pred.familiarity = None
    assert "cannot tell whether a video is like them" in note_markdown(pred, 6, "wave.mp4")
