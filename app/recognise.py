"""Tab "Recognise": a video in (upload, webcam, example) -> top-k actions, bar chart, timeline."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from . import plots
from core.data.video import probe_video
from core.predict import UNFAMILIAR
from core.preview import PreviewLimits, browser_preview, needs_preview

from .context import AppContext, UserError, handler, scratch_dir

log = logging.getLogger("app.recognise")
PREVIEW = PreviewLimits()  # length, size and frame rate of the browser previews


@dataclass
class Analysis:
    """What one Recognise call leaves for the Look inside tab (kept per browser session)."""

    checkpoint: str
    video_name: str
    prediction: Any  # core.predict.Prediction


def check_video_file(ctx: AppContext, video: str | None) -> tuple[Path, Any]:
    """Limits checked before any decoding: present, not too big (bytes), not too long (from the
    container's metadata). Returns (path, VideoInfo)."""
    if not video:
        raise UserError("Upload a video, record one, or pick an example first.")
    path = Path(video)
    if not path.is_file():
        raise UserError("The uploaded file is gone from the server; upload it again.")
    size_mb = path.stat().st_size / (1024 * 1024)
    if size_mb > ctx.config.max_upload_mb:
        raise UserError(
            f"'{path.name}' is {_up(size_mb)} MB; this server accepts videos up to "
            f"{ctx.config.max_upload_mb:g} MB."
        )
    if path.stat().st_size == 0:
        raise UserError(f"'{path.name}' is empty (0 bytes).")
    info = probe_video(path)  # opens the container and decodes one frame: VideoError if unreadable
    duration = info.num_frames / info.fps if info.fps else 0.0
    if duration > ctx.config.max_video_minutes * 60:
        raise UserError(
            f"'{path.name}' lasts {_up(duration / 60)} min; this server accepts videos up to "
            f"{ctx.config.max_video_minutes:g} min. Trim it and try again."
        )
    return path, info


def _up(value: float) -> str:
    """Rounded up to 0.1, so a value just over a limit never reads as the limit itself
    ("5.1 MB; up to 5 MB", not "5 MB; up to 5 MB")."""
    return f"{math.ceil(value * 10) / 10:g}"


def run_prediction(ctx: AppContext, video: str | None, topk: int, checkpoint: str | None,
                   with_attention: bool = True):
    path, _ = check_video_file(ctx, video)
    checkpoint = checkpoint or ctx.default_checkpoint()
    predictor = ctx.predictor(checkpoint)
    k = max(1, min(int(topk or 5), len(predictor.class_names)))
    pred = predictor.predict(path, topk=k, with_attention=bool(with_attention),
                             max_seconds=ctx.config.decode_seconds)
    return checkpoint, pred


def note_markdown(pred, cap_s: float, name: str) -> str:
    t = pred.timings or {}
    lines = [
        f"**{name}**: {len(pred.window_times)} window(s) over "
        f"{pred.num_frames_used / max(pred.fps, 1e-6):.1f} s at {pred.fps:.3g} fps; "
        f"decode {t.get('decode', 0):.2f} s, model {t.get('model', 0):.2f} s, "
        f"total {t.get('total', 0):.2f} s.",
        f"At most the first {cap_s:g} s of a video are decoded and analysed.",
    ]
    fam = pred.familiarity
    if fam is not None and not fam["familiar"]:
        lines.insert(0, f"**Unfamiliar video: {UNFAMILIAR}** (similarity to the training videos {fam['score']:.2f}, "
                        f"below {fam['threshold']:.2f}).")
    elif fam is None:
        lines.append("This checkpoint has no reference of its training videos, so it cannot tell whether a video "
                     "is like them: its answer is always one of its classes.")
    lines += [f"- note: {n}" for n in pred.notes if n != UNFAMILIAR]
    lines.append(f"This model knows {len(pred.class_names)} classes: {', '.join(pred.class_names)}.")
    return "\n".join(lines)


def build(ctx: AppContext, checkpoint_dd: gr.Dropdown, analysis: gr.State) -> dict:
    """Lay out the tab's components (inside an open gr.Tab) and wire its events."""
    cfg = ctx.config
    gr.Markdown(
        "Upload a video, record one with your webcam, or pick an example. The model looks at "
        "clips of the video and averages them: consecutive windows, or, for a model trained on short "
        "gestures (the default), clips that each span the whole video; the timeline shows how each "
        f"clip scored. Videos up to {cfg.max_upload_mb:g} MB and {cfg.max_video_minutes:g} min; "
        f"the first {cfg.decode_seconds:g} s are analysed. A file the browser cannot play (AVI, GIF, "
        f"WMV, ...) is shown as an H.264 preview of its first {PREVIEW.max_seconds:g} s; recognition "
        "always reads the file you uploaded."
    )
    with gr.Row():
        with gr.Column(scale=1):
            video = gr.Video(label="Video", sources=["upload", "webcam"], include_audio=True,
                             elem_id="recognise-video")
            topk = gr.Slider(1, 20, value=5, step=1, label="How many classes to show (k)")
            with_maps = gr.Checkbox(value=True, label="Also compute the attention maps (Look inside tab)")
            run = gr.Button("Recognise", variant="primary", elem_id="recognise-button")
            examples = cfg.example_videos()
            if examples:
                gr.Examples(examples=[[e] for e in examples], inputs=[video], label="Examples")
        with gr.Column(scale=1):
            label = gr.Label(label="Top classes", num_top_classes=20, elem_id="recognise-label")
            bar = gr.Plot(label="Probabilities")
    timeline = gr.Plot(label="Timeline")
    note = gr.Markdown(label="Notes", elem_id="recognise-note")
    originals = gr.State({})  # preview file name -> the upload it stands for (this browser session)

    @handler
    def show_playable(video_path, known):
        """An upload the browser cannot play is replaced on the page by its H.264 preview."""
        if not video_path or not needs_preview(video_path):
            return gr.update(), known
        check_video_file(ctx, video_path)
        preview = browser_preview(video_path, scratch_dir(), PREVIEW)
        return str(preview), {**(known or {}), preview.name: str(video_path)}

    video.upload(show_playable, [video, originals], [video, originals], api_visibility="private",
                 concurrency_limit=cfg.predict_concurrency, concurrency_id="preview")

    @handler
    def recognise(video_path, k, checkpoint, maps, known=None):
        if video_path and known and Path(video_path).name in known and Path(known[Path(video_path).name]).is_file():
            video_path = known[Path(video_path).name]  # the upload itself, not its preview
        ckpt, pred = run_prediction(ctx, video_path, k, checkpoint, maps)
        name = Path(video_path).name
        label_value = {n: float(p) for n, p in pred.topk}
        result = (
            label_value,
            plots.topk_bar(pred.topk),
            plots.timeline(pred.window_probs, pred.window_times, pred.class_names, top=min(int(k), 5)),
            note_markdown(pred, cfg.decode_seconds, name),
            Analysis(ckpt, name, pred),
        )
        return result

    event = run.click(
        recognise,
        inputs=[video, topk, checkpoint_dd, with_maps, originals],
        outputs=[label, bar, timeline, note, analysis],
        api_name="recognise",
        concurrency_limit=cfg.predict_concurrency,
        concurrency_id="model",
    )
    return {"video": video, "topk": topk, "run": run, "label": label, "event": event}
