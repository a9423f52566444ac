"""Bad input, end to end (issue 8): a corpus of bad files generated here, each fed to
`core.predict.Predictor.predict` and to the function the Recognise button calls (taken from the
built page, so the `handler` wrapper is included). Each either works or gives a clear message
naming the file; the page never shows a traceback; memory stays bounded (frames are resized while
decoding, decoded length is capped); upload size and duration limits refuse before decoding;
dataset folders with missing, empty, unreadable or unknown-class videos are reported with paths
and training goes on without them.

Everything runs on a tiny checkpoint (ST-MANet-10, width 4, 4 frames of 32x32), on one thread.
"""
from __future__ import annotations

import json
import logging
import os
import re
import struct
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from conftest import one_thread_env, write_rhythm_video

gr = pytest.importorskip("gradio")

from core.data import video as video_mod
from core.data.video import DataWarning, VideoError

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ["wave", "clap", "jump"]
FPS = 10.0


# ------------------------------------------------------------------------------ the corpus
def frames(n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    """BGR frames: a grey-blue scene with a white square moving right (so clips have motion)."""
    out = []
    for i in range(n):
        f = np.empty((h, w, 3), np.uint8)
        f[:] = (90, 60, 30)
        s = max(2, min(h, w) // 6)
        x = (i * max(1, w // 16)) % max(1, w - s)
        f[h // 3 : h // 3 + s, x : x + s] = 250
        out.append(f)
    return out


def write(path: Path, images: list[np.ndarray], fps: float = FPS, fourcc: str = "MJPG",
          size: tuple[int, int] | None = None, color: bool = True) -> Path:
    """An AVI (MJPG) or MP4 (mp4v) written by OpenCV; `images` may be empty (size then needed)."""
    h, w = images[0].shape[:2] if images else size[::-1]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h), isColor=color)
    assert writer.isOpened(), f"cv2.VideoWriter cannot write {path}"
    for image in images:
        writer.write(image)
    writer.release()
    return path


def patch_avi_rate(src: Path, dst: Path, rate: int, scale: int, usec_per_frame: int | None = None) -> Path:
    """Copy an OpenCV MJPG AVI with its stream header's fps (dwRate/dwScale) and optionally the
    main header's microseconds per frame rewritten: a container that lies about its frame rate."""
    data = bytearray(src.read_bytes())
    strh = data.index(b"strh")  # 'strh' size fccType fccHandler dwFlags wPriority wLanguage dwInitialFrames dwScale dwRate
    struct.pack_into("<II", data, strh + 28, scale, rate)
    if usec_per_frame is not None:
        struct.pack_into("<I", data, data.index(b"avih") + 8, usec_per_frame)
    dst.write_bytes(bytes(data))
    return dst


def _png(path: Path) -> Path:
    cv2.imwrite(str(path), frames(1)[0])
    return path


def _jpeg(path: Path) -> Path:
    cv2.imwrite(str(path.with_suffix(".jpg")), frames(1)[0])
    if path.suffix != ".jpg":
        path.with_suffix(".jpg").rename(path)
    return path


def _png_named_mp4(path: Path) -> Path:
    path.write_bytes(_png(path.with_suffix(".png")).read_bytes())
    return path


def _cut(src_maker, fraction=0.5):
    def make(path: Path) -> Path:
        whole = src_maker(path.with_name("whole_" + path.name))
        data = whole.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])
        return path
    return make


def _scramble_header(path: Path) -> Path:
    whole = write(path.with_name("whole_" + path.name), frames(10))
    data = bytearray(whole.read_bytes())
    data[12:200] = np.random.default_rng(0).integers(0, 256, 188, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def _zero_frames(path: Path) -> Path:
    return write(path, [], size=(64, 48))


def _ok_avi(path: Path, n: int = 10) -> Path:
    return write(path, frames(n))


def _fps_lie(rate: int, scale: int, usec: int | None = None):
    def make(path: Path) -> Path:
        return patch_avi_rate(_ok_avi(path.with_name("src_" + path.name)), path, rate, scale, usec)
    return make


# name -> (make(path) -> path, expected). expected: ("error", regex the message must match) or
# ("ok", regex a note must match, or None). Error messages must also name the file.
NOT_A_VIDEO = r"cannot open .* as a video: not a video file, corrupt"
CORPUS = {
    # FFmpeg's tty demuxer would render a .txt as frames of text: refused by content
    "notes.txt": (lambda p: (p.write_text("this is not a video\n" * 50), p)[1], ("error", r"it is a text file, not a video")),
    "text named.mp4": (lambda p: (p.write_text("héllo\n" * 50, encoding="utf-8"), p)[1], ("error", r"it is a text file, not a video")),
    "picture.png": (_png, ("error", r"it is a still image \(PNG\), not a video")),
    "photo.jpg": (_jpeg, ("error", r"it is a still image \(JPEG\), not a video")),
    "png inside.mp4": (_png_named_mp4, ("error", r"still image \(PNG\), not a video")),
    "random.mp4": (lambda p: (p.write_bytes(np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes()), p)[1],
                   ("error", NOT_A_VIDEO)),
    "empty.mp4": (lambda p: (p.write_bytes(b""), p)[1], ("error", r"empty.*0 bytes")),
    # OpenCV's mp4v writer puts the index (moov) at the end: half a file has none
    "truncated.mp4": (_cut(lambda p: write(p, frames(40), fourcc="mp4v")), ("error", NOT_A_VIDEO)),
    # an AVI cut in half still has its header (100 frames): what is left is used, and said
    "truncated.avi": (_cut(lambda p: write(p, frames(100))),
                      ("ok", r"ends before the 100 frames its header promises \(truncated or corrupt\?\)")),
    "corrupt header.avi": (_scramble_header, ("error", NOT_A_VIDEO)),
    "zero frames.avi": (_zero_frames, ("error", r"no decodable frames .*zero frames or corrupt stream")),
    "one frame.avi": (lambda p: write(p, frames(1)), ("ok", r"shorter than one window \(1 frames")),
    "fps 1e9.avi": (_fps_lie(10**9, 1), ("ok", r"gives no frame rate: 25 fps assumed")),
    "fps 1e-5.avi": (_fps_lie(1, 100_000), ("ok", r"gives no frame rate: 25 fps assumed")),
    "fps 0.avi": (_fps_lie(0, 1, usec=0), ("ok", None)),  # FFmpeg falls back to its own 25 fps
    "grey.avi": (lambda p: write(p, [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames(10)], color=False), ("ok", None)),
    "portrait.avi": (lambda p: write(p, frames(12, h=320, w=240)), ("ok", None)),
    "tiny 16x16.avi": (lambda p: write(p, frames(12, h=16, w=16)), ("ok", None)),
    "vidéo d'essai ü 1.avi": (lambda p: write(p, frames(10)), ("ok", None)),
    "日本語 動画 (2).mp4": (lambda p: write(p, frames(10), fourcc="mp4v"), ("ok", None)),
    "50% off %d.avi": (lambda p: write(p, frames(10)), ("ok", None)),
}


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A checkpoints folder with one tiny model; its clip config thins to 8 windows like a
    trained checkpoint (TrainConfig.max_val_windows)."""
    import torch

    from core.checkpoint import save_checkpoint
    from core.data.clips import ClipConfig
    from core.model import build_model, config_by_name

    root = tmp_path_factory.mktemp("bad_input")
    torch.manual_seed(0)
    model = build_model(config_by_name("stmanet_r10", num_classes=3, base_width=4))
    clip = ClipConfig(num_frames=4, stride=1, height=32, width=32, max_windows=8)
    save_checkpoint(root / "checkpoints" / "tiny", model.eval(), clip, CLASSES, data_source="random init (test)")
    return root


@pytest.fixture(scope="module")
def predictor(tiny):
    from core.predict import Predictor

    return Predictor(tiny / "checkpoints" / "tiny", device="cpu")


@pytest.fixture(scope="module")
def page(tiny):
    """The built page (not launched): its context and the very functions its buttons call."""
    from app import AppConfig, build_demo

    cfg = AppConfig(checkpoint=tiny / "checkpoints" / "tiny", checkpoints_dir=tiny / "checkpoints",
                    runs_dir=tiny / "runs", data_root=None, examples_dir=None,
                    max_upload_mb=5, max_video_minutes=30, decode_seconds=6)
    demo = build_demo(cfg, warm_up=False)
    buttons = {f.api_name: f.fn for f in demo.fns.values()}
    return SimpleNamespace(ctx=demo.ctx, button=buttons["recognise"], start_run=buttons["finetune_start"])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return {name: make(folder / name) for name, (make, _) in CORPUS.items()}


def no_traceback(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text and "Error(" not in text, text


def recognise(fn, path) -> tuple[str, object]:
    """("ok", outputs) or ("error", the message the page shows)."""
    try:
        out = fn(None if path is None else str(path), 3, "tiny", True)
    except gr.Error as err:
        no_traceback(err.message)
        return "error", err.message
    no_traceback(out[3])  # the note under the results
    return "ok", out


# ------------------------------------------------------------------------------ the corpus, both ways
@pytest.mark.parametrize("name", list(CORPUS))
def test_corpus_file_works_or_says_why(name, files, predictor, page):
    path = files[name]
    kind, expected = CORPUS[name][1]
    button = page.button

    # core.predict
    if kind == "error":
        with pytest.raises(VideoError, match=expected) as err:
            predictor.predict(path)
        assert path.name in str(err.value)
    else:
        result = predictor.predict(path)
        assert result.label in CLASSES and abs(result.probs.sum() - 1) < 1e-4
        assert result.fps > 0 and np.isfinite(result.window_times).all()
        if expected:
            assert any(re.search(expected, n) for n in result.notes), result.notes

    # the Recognise button
    status, out = recognise(button, path)
    assert status == kind, out
    if kind == "error":
        assert re.search(expected, out), out
        assert path.name in out, out
    else:
        label, _bar, _timeline, note, analysis = out
        assert set(label) <= set(CLASSES) and abs(sum(label.values()) - 1) < 1e-3
        assert f"**{path.name}**" in note  # names the file, unicode and spaces intact
        if expected:
            assert re.search(expected, note), note
        assert analysis.prediction.attention is not None  # Look inside gets its maps


def test_no_file_and_vanished_upload(page, tmp_path):
    button = page.button
    assert recognise(button, None) == ("error", "Upload a video, record one, or pick an example first.")
    status, msg = recognise(button, tmp_path / "gone.mp4")
    assert status == "error" and "gone from the server" in msg


def test_image_and_text_detection_leaves_videos_alone(tmp_path, files, shared_data):
    """Real clips (GIF included: animated GIFs are videos) and every container written here are
    not mistaken for images or text; each still-image format is named."""
    videos = [p for p in sorted((shared_data / "clips").iterdir()) if p.is_file()]
    videos += [files[n] for n, (_, (kind, _)) in CORPUS.items() if kind == "ok"]
    videos.append(write(tmp_path / "v.mp4", frames(5), fourcc="mp4v"))
    for clip in videos:
        assert video_mod.non_video_kind(clip) is None, clip
    for ext, kind in (("png", "PNG"), ("jpg", "JPEG"), ("bmp", "BMP"), ("tiff", "TIFF"), ("webp", "WebP")):
        p = tmp_path / f"x.{ext}"
        cv2.imwrite(str(p), frames(1)[0])
        assert video_mod.non_video_kind(p) == f"a still image ({kind})"
        with pytest.raises(VideoError, match=rf"x.{ext} as a video: it is a still image \({kind}\)"):
            video_mod.probe_video(p)
    for name, text in (("a.txt", "plain\n"), ("ansi.nfo", "\x1b[31mred\x1b[0m\n"), ("utf8.txt", "ünïcode ✓\n")):
        (tmp_path / name).write_text(text * 30, encoding="utf-8")
        assert video_mod.non_video_kind(tmp_path / name) == "a text file"


# ------------------------------------------------------------------------------ frames the container gives oddly
class OddCapture:
    """A real capture whose frames come out as a backend without colour conversion would give
    them (4-channel BGRA, or 2-D grey), and whose fps property may be replaced."""

    def __init__(self, real, mode: str, fps: float | None = None):
        self.cap, self.mode, self.fps = real, mode, fps

    def _odd(self, ok, frame):
        if ok and frame is not None:
            frame = {"bgra": lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2BGRA),
                     "grey2d": lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2GRAY),
                     "same": lambda f: f}[self.mode](frame)
        return ok, frame

    def retrieve(self, *a):
        return self._odd(*self.cap.retrieve(*a))

    def read(self, *a):
        return self._odd(*self.cap.read(*a))

    def get(self, prop):
        if prop == cv2.CAP_PROP_FPS and self.fps is not None:
            return self.fps
        return self.cap.get(prop)

    def __getattr__(self, name):
        return getattr(self.cap, name)


@pytest.mark.parametrize("mode", ["bgra", "grey2d"])
def test_four_channel_and_2d_grey_frames(mode, predictor, page, tmp_path, monkeypatch):
    path = write(tmp_path / f"{mode}.avi", frames(10))
    expected = predictor.predict(path)
    real = cv2.VideoCapture
    monkeypatch.setattr(video_mod.cv2, "VideoCapture", lambda *a: OddCapture(real(*a), mode))
    result = predictor.predict(path)
    assert result.frames.ndim == 4 and result.frames.shape[-1] == 3 and result.frames.dtype == np.uint8
    if mode == "bgra":  # same pixels, alpha dropped, still RGB: same answer
        np.testing.assert_allclose(result.window_probs, expected.window_probs, atol=1e-5)
        r, g, b = result.frames[0, :4, :4].reshape(-1, 3).mean(0)  # the scene is BGR (90, 60, 30)
        assert r < g < b
    else:  # grey: three equal channels
        assert (result.frames[..., 0] == result.frames[..., 2]).all()
    status, out = recognise(page.button, path)
    assert status == "ok", out


@pytest.mark.parametrize("fps", [0.0, float("nan"), -25.0, 1e9, 1e-6])
def test_unusable_fps_is_replaced_and_said(fps, predictor, page, tmp_path, monkeypatch):
    path = write(tmp_path / "v.avi", frames(20))
    real = cv2.VideoCapture
    monkeypatch.setattr(video_mod.cv2, "VideoCapture", lambda *a: OddCapture(real(*a), "same", fps=fps))
    result = predictor.predict(path)
    assert result.fps == 25.0 and any("25 fps assumed" in n for n in result.notes)
    assert result.window_times[-1][1] == pytest.approx(20 / 25.0)
    status, out = recognise(page.button, path)
    assert status == "ok" and "25 fps assumed" in out[3], out


# ------------------------------------------------------------------------------ 8K: bounded memory
@pytest.fixture(scope="module")
def video_8k(tmp_path_factory):
    """Three 7680x4320 MJPG frames (a checkerboard with a moving square; about 2.6 MB on disk)."""
    h, w = 4320, 7680
    board = ((np.arange(w)[None, :] // 64 + np.arange(h)[:, None] // 64) % 2 * 120 + 60).astype(np.uint8)
    images = []
    for i in range(3):
        f = np.repeat(board[..., None], 3, axis=2)
        f[1000:2000, 1000 + 500 * i : 2000 + 500 * i] = (0, 0, 255)
        images.append(f)
    return write(tmp_path_factory.mktemp("8k") / "eight k.avi", images)


def test_8k_frames_are_reduced_while_decoding(video_8k, predictor, page):
    from core.data.clips import decode_max_side

    full = 4320 * 7680 * 3  # bytes of one decoded frame
    side = decode_max_side(7680, 4320, predictor.clip_cfg, train=False)
    assert side is not None and side < 200
    tracemalloc.start()
    try:
        result = predictor.predict(video_8k)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # numpy arrays alive at once: the frame OpenCV just decoded (and the one before it), never
    # the clip's three frames at full size
    assert peak < 2.5 * full, f"peak {peak / 1e6:.0f} MB of arrays for {full / 1e6:.0f} MB frames"
    assert max(result.frames.shape[1:3]) <= side and result.frames.nbytes < 1e6
    frames_8k = video_mod.read_frames(video_8k, [0, 1, 2, 1], max_side=side)
    assert frames_8k.shape == (4, round(4320 * side / 7680), side, 3)
    status, out = recognise(page.button, video_8k)
    assert status == "ok", out


RSS_SCRIPT = """
import json, re, sys
from pathlib import Path
from core.predict import Predictor
from core.data.video import read_frames
# peak RSS of this process image: VmHWM starts afresh at exec (ru_maxrss would carry the forking
# pytest process's size over)
mb = lambda: int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024
mode, ckpt, small, big = sys.argv[1:]
p = Predictor(ckpt, device="cpu")
p.predict(small)  # warm: model, threads, FFmpeg
before = mb()
if mode == "predict":
    shape = p.predict(big).frames.shape
else:  # what holding the clip's frames at full size would cost, on the same baseline
    shape = read_frames(big, [0, 1, 2, 1], max_side=None).shape
print(json.dumps({"growth": mb() - before, "shape": list(shape)}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="peak RSS read from Linux /proc")
def test_8k_peak_rss_stays_bounded(video_8k, tiny, files):
    """Peak RSS, each in a fresh process on the same baseline: predicting the 8K clip grows it by
    at least two full-size frames less than reading the clip's frames at full size does (the
    FFmpeg decoder's own buffers are in both, and grow with its threads)."""
    args = [str(tiny / "checkpoints" / "tiny"), str(files["one frame.avi"]), str(video_8k)]
    procs = {mode: subprocess.Popen([sys.executable, "-c", RSS_SCRIPT, mode, *args], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=one_thread_env())
             for mode in ("predict", "full")}
    rss = {}
    for mode, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-2000:]
        rss[mode] = json.loads(out.strip().splitlines()[-1])
    full_mb = 4320 * 7680 * 3 / 2**20
    assert rss["full"]["shape"] == [4, 4320, 7680, 3] and max(rss["predict"]["shape"][1:3]) < 200
    assert rss["predict"]["growth"] + 2 * full_mb < rss["full"]["growth"], rss


# ------------------------------------------------------------------------------ 2 h: the decode cap
@pytest.fixture(scope="module")
def two_hours(tmp_path_factory):
    """7200 frames of 16x16 at 1 fps: a 2 h video that costs 2 MB and 0.3 s to write."""
    return write(tmp_path_factory.mktemp("long") / "two hours.avi", frames(7200, h=16, w=16), fps=1.0)


def test_two_hour_video_refused_by_the_duration_limit_before_decoding(two_hours, page, monkeypatch):
    import core.predict

    def must_not_decode(*a, **k):
        raise AssertionError("decoded before the limits were checked")

    monkeypatch.setattr(core.predict, "read_frames", must_not_decode)
    status, msg = recognise(page.button, two_hours)
    assert status == "error"
    assert msg == "'two hours.avi' lasts 120 min; this server accepts videos up to 30 min. Trim it and try again."


def test_two_hour_video_is_capped_when_allowed(two_hours, page, predictor, monkeypatch):
    ctx, button = page.ctx, page.button
    monkeypatch.setattr(ctx.config, "max_video_minutes", 180)
    tick = time.perf_counter()
    status, out = recognise(button, two_hours)
    assert status == "ok", out
    note = out[3]
    assert "decoded only the first 6 s (6 of 7200 frames; max_seconds cap)" in note
    assert "At most the first 6 s of a video are decoded" in note
    assert out[4].prediction.num_frames_used == 6
    assert time.perf_counter() - tick < 5

    # Predictor without a time cap: the clip config's 8 windows, so 32 frames kept whatever the length
    seen = {}
    real = video_mod.read_frames

    def spy(path, indices, **kw):
        seen["n"] = len(indices)
        return real(path, indices, **kw)

    import core.predict

    monkeypatch.setattr(core.predict, "read_frames", spy)
    result = predictor.predict(two_hours)
    assert seen["n"] <= 8 * 4 and len(result.window_times) == 8
    assert any("1800 windows thinned to 8" in n for n in result.notes)
    capped = predictor.predict(two_hours, max_seconds=30)
    assert capped.num_frames_used == 30 and any("first 30 s" in n for n in capped.notes)


# ------------------------------------------------------------------------------ upload limits
def test_size_limit_refuses_before_opening_the_file(page, tmp_path, monkeypatch):
    ctx, button = page.ctx, page.button
    path = write(tmp_path / "big clip.avi", frames(40, h=240, w=320))
    size_mb = path.stat().st_size / 2**20
    monkeypatch.setattr(ctx.config, "max_upload_mb", round(size_mb * 0.9, 3))

    def must_not_open(*a, **k):
        raise AssertionError("opened before the size limit was checked")

    monkeypatch.setattr(video_mod, "probe_video", must_not_open)
    monkeypatch.setattr(video_mod.cv2, "VideoCapture", must_not_open)
    status, msg = recognise(button, path)
    assert status == "error" and msg.startswith("'big clip.avi' is ")
    shown, limit = msg.split(" is ")[1].split(" MB")[0], ctx.config.max_upload_mb
    assert float(shown) > limit, msg  # never "5 MB; up to 5 MB"
    assert f"accepts videos up to {limit:g} MB" in msg


def test_duration_just_over_the_limit_reads_over_it(page, tmp_path, monkeypatch):
    ctx, button = page.ctx, page.button
    path = write(tmp_path / "a bit long.avi", frames(61, h=16, w=16), fps=1.0)  # 61 s
    monkeypatch.setattr(ctx.config, "max_video_minutes", 1.0)
    status, msg = recognise(button, path)
    assert status == "error" and "lasts 1.1 min; this server accepts videos up to 1 min" in msg, msg


def test_zip_size_limit_refuses_before_unpacking(page, tmp_path, monkeypatch):
    """The Fine-tune tab's zip upload: over max_zip_mb, refused by the start button's own
    function before anything is unpacked or any run starts."""
    import zipfile

    ctx, start = page.ctx, page.start_run
    z = tmp_path / "my data.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_STORED) as zf:
        for cls in ("a", "b"):
            zf.writestr(f"set/{cls}/clip.avi", np.random.default_rng(0).bytes(300_000))
    monkeypatch.setattr(ctx.config, "max_zip_mb", 0.25)

    def must_not_unpack(*a, **k):
        raise AssertionError("unpacked before the size limit was checked")

    monkeypatch.setattr(ctx.runs, "extract_zip", must_not_unpack)
    monkeypatch.setattr(ctx.runs, "start", must_not_unpack)
    with pytest.raises(gr.Error) as err:
        start("Upload a zip", str(z), "", "ucf101", "", "", "", "", "", 1, "tiny", 1, 0.001, 2, 4, 1, "adamw")
    no_traceback(err.value.message)
    assert err.value.message == "the zip is larger than 0.25 MB"


def test_limits_are_configurable(monkeypatch, tmp_path):
    from app import AppConfig, launch_kwargs

    monkeypatch.setenv("STMANET_MAX_UPLOAD_MB", "12.5")
    monkeypatch.setenv("STMANET_MAX_ZIP_MB", "40")
    monkeypatch.setenv("STMANET_MAX_VIDEO_MINUTES", "2")
    monkeypatch.setenv("STMANET_DECODE_SECONDS", "7")
    cfg = AppConfig.from_env(runs_dir=tmp_path)
    assert (cfg.max_upload_mb, cfg.max_zip_mb, cfg.max_video_minutes, cfg.decode_seconds) == (12.5, 40, 2, 7)
    assert launch_kwargs(cfg)["max_file_size"] == 40 * 2**20  # gradio refuses bigger uploads itself
    monkeypatch.setenv("STMANET_MAX_UPLOAD_MB", "lots")
    assert AppConfig.from_env().max_upload_mb == 200.0  # a typo falls back to the default


# ------------------------------------------------------------------------------ datasets
def _good(root: Path, rel: str, period: int, seed: int) -> Path:
    return write_rhythm_video(root / rel, period, np.random.default_rng(seed), n_frames=12, size=32)


def test_class_folders_with_empty_broken_and_unreadable_videos(tmp_path):
    from core.data.dataset import scan_videos
    from core.data.folder import read_class_folders

    root = tmp_path / "folders"
    for k in range(2):
        _good(root, f"fast/clip{k}.avi", 4, k)
        _good(root, f"slow/clip{k}.avi", 16, 10 + k)  # same file names in two classes: both kept
    (root / "fast" / "empty.avi").write_bytes(b"")
    (root / "slow" / "broken.mp4").write_text("not a video")
    (root / "no videos here").mkdir()
    (root / "no videos here" / "readme.txt").write_text("hi")
    locked = root / "slow" / "locked.avi"
    _good(root, "slow/locked.avi", 16, 99)
    locked.chmod(0)
    try:
        train, _ = read_class_folders(root, val_fraction=0.0)
        assert train.class_names == ["fast", "slow"]
        assert any(str(root / "no videos here") in p and "no video files" in p for p in train.problems)
        names = sorted(s.path.name for s in train.samples)
        assert names.count("clip0.avi") == 2 and names.count("clip1.avi") == 2
        report = scan_videos(train)
        bad = {p.name: why for p, why in report.bad}
        assert "empty file (0 bytes)" in bad["empty.avi"] and str(root / "fast" / "empty.avi") in bad["empty.avi"]
        assert "cannot open" in bad["broken.mp4"]
        if os.geteuid() != 0:  # root reads any file: the lock only binds other users
            assert "locked.avi" in bad
        assert len(report.ok) >= 4 and f"{len(report.bad)} unreadable" in report.summary()
    finally:
        locked.chmod(0o644)


def test_training_reports_bad_entries_with_paths_and_goes_on(tmp_path, caplog):
    """A list-layout dataset with a missing file, a duplicate line, an unknown class, an empty
    and a corrupt video (and an empty video and an unknown class in validation): each is
    reported with its path, and a 1-epoch run of a tiny model finishes without them with a
    loadable checkpoint. (tests/test_train.py::test_unreadable_videos_are_reported_at_start_and_left_out
    checks the trainer's start-up scan in detail.)"""
    from core.checkpoint import load_checkpoint
    from core.train import TrainConfig, train

    root = tmp_path / "data"
    for k in range(2):
        _good(root, f"train/fast_{k}.avi", 4, k)
        _good(root, f"train/slow_{k}.avi", 16, 10 + k)
        _good(root, f"val/fast_{k}.avi", 4, 20 + k)
        _good(root, f"val/slow_{k}.avi", 16, 30 + k)
    (root / "train" / "empty.avi").write_bytes(b"")
    (root / "train" / "garbage.avi").write_text("not a video at all")
    (root / "val" / "empty val.avi").write_bytes(b"")
    (root / "classes.txt").write_text("fast\nslow\n")
    (root / "train.txt").write_text(
        "train/fast_0.avi fast\ntrain/slow_0.avi slow\ntrain/fast_1.avi fast\ntrain/slow_1.avi slow\n"
        "train/empty.avi fast\ntrain/garbage.avi slow\n"
        "train/missing.avi fast\n"  # not on disk
        "train/fast_0.avi fast\n"  # duplicate line
        "train/fast_1.avi jump\n"  # class not in classes.txt
    )
    (root / "val.txt").write_text(
        "val/fast_0.avi fast\nval/slow_0.avi slow\nval/fast_1.avi fast\nval/slow_1.avi slow\n"
        "val/empty val.avi slow\nval/slow_1.avi walk\n"
    )
    cfg = TrainConfig(
        run_dir=str(tmp_path / "run"), data_layout="list", data_root=str(root),
        train_list=str(root / "train.txt"), val_list=str(root / "val.txt"), class_list=str(root / "classes.txt"),
        model="stmanet_r10", base_width=4, num_frames=4, stride=1, height=32, width=32, max_val_windows=2,
        epochs=1, batch_size=2, max_steps_per_epoch=3, num_workers=0, device="cpu", show_progress=False,
    )
    caplog.set_level(logging.WARNING, logger="core.train")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(cfg)
    assert result.error is None and not result.stopped
    assert len(result.history) == 1 and "val_acc" in result.history[0]
    assert load_checkpoint(result.checkpoint_dir).class_names == ["fast", "slow"]

    logged = caplog.text
    assert f"{root / 'train' / 'missing.avi'}: file not found (train.txt:7)" in logged
    assert f"{root / 'train' / 'fast_0.avi'}: duplicate entry, kept the first (train.txt:8)" in logged
    assert f"{root / 'train' / 'fast_1.avi'}: unknown class 'jump' (train.txt:9)" in logged
    assert f"{root / 'val' / 'slow_1.avi'}: unknown class 'walk' (val.txt:6)" in logged
    # Unreadable videos: named with the reason, by the trainer's start-up scan (left out) or,
    # without one, when an epoch meets them (replaced by the next readable video). Three steps
    # of two cover all six training entries either way.
    reported = logged + " ".join(str(w.message) for w in caught if issubclass(w.category, DataWarning))
    for rel, reason in (("train/empty.avi", "empty file (0 bytes)"), ("train/garbage.avi", "it is a text file")):
        line = next((ln for ln in reported.splitlines() if str(root / rel) in ln and "unreadable" in ln), "")
        assert reason in line, (rel, reported)
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    start = next(e for e in events if e["event"] == "start")
    assert start["train_videos"] in (4, 6)  # 4: left out at start; 6: skipped when met
    assert events[-1]["event"] == "done" and events[-1]["error"] is None


def test_duplicate_class_names_refuse_the_dataset_by_file(tmp_path):
    from core.train import TrainConfig, train

    root = tmp_path / "data"
    _good(root, "a.avi", 4, 0)
    (root / "classes.txt").write_text("fast\nslow\nfast\n")
    (root / "train.txt").write_text("a.avi fast\n")
    cfg = TrainConfig(run_dir=str(tmp_path / "run"), data_layout="list", data_root=str(root),
                      train_list=str(root / "train.txt"), class_list=str(root / "classes.txt"),
                      model="stmanet_r10", base_width=4, num_frames=4, height=32, width=32, epochs=1,
                      num_workers=0, device="cpu", show_progress=False)
    with pytest.raises(ValueError, match=r"classes.txt: duplicate class names \['fast'\]"):
        train(cfg)


def test_no_readable_training_video_is_a_clear_error(tmp_path):
    from core.train import TrainConfig, TrainingError, train

    root = tmp_path / "data"
    root.mkdir()
    (root / "a.avi").write_bytes(b"")
    (root / "b.avi").write_text("text")
    (root / "train.txt").write_text("a.avi fast\nb.avi slow\n")
    cfg = TrainConfig(run_dir=str(tmp_path / "run"), data_layout="list", data_root=str(root),
                      train_list=str(root / "train.txt"), model="stmanet_r10", base_width=4, num_frames=4,
                      height=32, width=32, epochs=1, num_workers=0, device="cpu", show_progress=False)
    with pytest.raises(TrainingError, match=r"none of the 2 training videos can be read, e\.g\. .*a\.avi.*empty file"):
        train(cfg)
