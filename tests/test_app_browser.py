"""End to end in headless Chromium (Playwright, system /usr/bin/chromium): upload a video, see the
top-k labels, open Look inside and see an attention image; a screenshot goes under tmp_path."""
from __future__ import annotations

import contextlib
import os

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent: install it with `apt-get install -y chromium`")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from app import AppConfig, build_demo, launch_kwargs
    from tests.test_app import make_tiny_checkpoint

    root = tmp_path_factory.mktemp("browser")
    ckpt = make_tiny_checkpoint(root / "checkpoints" / "tiny")
    _everything_unfamiliar(ckpt)
    cfg = AppConfig(checkpoint=ckpt, checkpoints_dir=root / "checkpoints", runs_dir=root / "runs",
                    data_root=None, examples_dir=None, decode_seconds=6)
    demo = build_demo(cfg)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, ssr_mode=False, **launch_kwargs(cfg))
    try:
        yield url
    finally:
        demo.close()


def _everything_unfamiliar(ckpt) -> None:
    """A familiarity reference whose threshold no video reaches (scores are cosines, <= 1)."""
    import numpy as np

    from core.checkpoint import load_checkpoint, save_familiarity

    dim = load_checkpoint(ckpt).model.classifier.in_features
    reference = np.eye(4, dim, dtype=np.float32)
    save_familiarity(ckpt, reference, 2.0, {"margin": 0.0})


@contextlib.contextmanager
def uploaded(browser, server, clip):
    """The app's page with `clip` uploaded in Recognise; no script error may happen on it."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(server, wait_until="domcontentloaded", timeout=60_000)
        page.locator("#recognise-video input[type=file]").set_input_files(str(clip), timeout=30_000)
        yield page
    finally:
        page.close()
    assert not errors, errors


def test_upload_recognise_and_look_inside(browser, server, shared_data, tmp_path):
    clip = shared_data / "clips" / "mmaction2_tests_data_test.mp4"
    with uploaded(browser, server, clip) as page:
        # the uploaded video shows up in the player before we press the button
        page.locator("#recognise-video video").first.wait_for(state="attached", timeout=30_000)
        page.locator("#recognise-button").click()
        label = page.locator("#recognise-label")
        label.get_by_text("wave").first.wait_for(timeout=60_000)
        for name in ("wave", "clap", "jump"):
            assert label.get_by_text(name).count() >= 1
        # beside the top-k, in plain words: this video is not like the training videos
        page.locator("#recognise-note").get_by_text("Unfamiliar video").first.wait_for(timeout=10_000)
        page.screenshot(path=str(tmp_path / "recognise.png"), full_page=True)

        page.get_by_role("tab", name="Look inside").click()
        img = page.locator("#inside-spatial-5 img")
        img.first.wait_for(state="visible", timeout=60_000)
        src = img.first.get_attribute("src")
        assert src and ("/file=" in src or "gradio_api/file" in src or src.startswith("data:image"))
        page.locator("#inside-status").get_by_text("top class").wait_for(timeout=30_000)
        shot = tmp_path / "look_inside.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000


def test_an_avi_upload_plays_as_a_preview_and_is_recognised_from_the_original(browser, server, make_video,
                                                                              tmp_path):
    """Chromium cannot play MJPG AVI: the page swaps in an H.264 preview (no "not playable"
    toast, the <video> loads and has a duration), and Recognise still reads the uploaded AVI."""
    clip = make_video(tmp_path / "upload.avi", 60, width=96, height=64)
    with uploaded(browser, server, clip) as page:
        video = page.locator("#recognise-video video").first
        page.wait_for_function(
            "() => { const v = document.querySelector('#recognise-video video');"
            " return v && v.currentSrc.includes('upload.preview.mp4') && v.readyState >= 1 && v.duration > 0; }",
            timeout=60_000)
        assert video.evaluate("v => v.error") is None
        assert page.get_by_text("not playable").count() == 0
        page.locator("#recognise-button").click()
        note = page.locator("#recognise-note")
        note.get_by_text("upload.avi").first.wait_for(timeout=60_000)  # the original, not the preview
        assert note.get_by_text("preview").count() == 0
        page.screenshot(path=str(tmp_path / "avi_preview.png"), full_page=True)
