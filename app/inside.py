"""Tab "Look inside": the attention maps of the last recognised video, and the checkpoint's facts.

Pictures come from `core.attention_maps`; the maps themselves from `core.predict` (design
section 9): per stage 2-5 the spatial map (attention each position receives), the temporal
T x T matrix and the attention each time step receives, and the 4x4 stage similarity matrices.
"""
from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr
import numpy as np

from core.attention_maps import (enlarge, filmstrip, spatial_overlay, temporal_to_frames, view_on_frame,
                                  write_video)

from . import plots
from .context import AppContext, UserError, handler, scratch_dir

log = logging.getLogger("app.inside")

STAGES = (2, 3, 4, 5)
EXPORT_MIN_SIDE = 360  # overlay videos are exported at least this tall: sharp when a player enlarges them
NO_ANALYSIS = "Recognise a video first (tab **Recognise**, with *attention maps* ticked): its maps appear here."


def _maps(analysis):
    if analysis is None:
        raise UserError("Recognise a video first; its attention maps are shown here.")
    pred = analysis.prediction
    if not pred.attention:
        raise UserError("This video was recognised without attention maps: tick 'Also compute the "
                        "attention maps' in Recognise and run it again.")
    return pred


def _stage(pred, stage: int):
    for s in pred.attention:
        if s.stage == int(stage):
            return s
    raise UserError(f"no stage {stage} in this model's maps")


def overlay_frame(pred, stage: int, frame: int) -> np.ndarray | None:
    """Frame `frame` of the shown window with stage `stage`'s spatial map blended over it."""
    s = _stage(pred, stage)
    if s.spatial is None:
        return None
    f = int(np.clip(frame, 0, len(pred.frames) - 1))
    return spatial_overlay(pred.frames[f : f + 1], s.spatial[pred.frames_window])[0]


def _display_size(image: np.ndarray | None, short_side: int = 224) -> np.ndarray | None:
    """Enlarge a small crop for the page (the model sees ~112 px; a browser shows it tiny)."""
    return image if image is None else enlarge(image[None], short_side)[0]


def spatial_images(analysis, frame) -> list:
    if analysis is None or not analysis.prediction.attention:
        return [None] * len(STAGES)
    pred = analysis.prediction
    return [_display_size(overlay_frame(pred, st, frame or 0)) for st in STAGES]


def strip(frames: np.ndarray) -> np.ndarray:
    """The window's frames side by side, above the per-frame curve."""

    return filmstrip(frames, n=min(16, len(frames)), height=72)


def temporal_views(analysis, stage):
    """(T x T heat map, filmstrip, received-attention curve) for one stage of the shown window."""
    if analysis is None or not analysis.prediction.attention:
        msg = "no maps yet"
        return plots.empty(msg), None, plots.empty(msg, height=200)
    pred = analysis.prediction
    s = _stage(pred, stage or 5)
    if s.temporal is None:
        msg = "this model has no temporal attention (TDA off)"
        return plots.empty(msg), strip(pred.frames), plots.empty(msg, height=200)
    w = pred.frames_window
    t_i = s.temporal.shape[-1]
    n = len(pred.frames)
    heat = plots.heatmap(
        s.temporal[w], f"Stage {s.stage}: temporal attention ({t_i} x {t_i} time steps, "
        f"{n // max(t_i, 1)} input frame(s) each)",
        "key (attended) time step", "query time step", colorscale="Magma",
    )

    per_frame = np.asarray(temporal_to_frames(s.received[w], n))
    idx = pred.window_indices[w] if pred.window_indices else np.arange(n)
    times = [float(i) / pred.fps for i in np.asarray(idx)[: len(per_frame)]]
    curve = plots.received_curve(per_frame, times, f"Stage {s.stage}: attention each input frame receives")
    return heat, strip(pred.frames), curve


def diversity_views(analysis):
    if analysis is None or not analysis.prediction.diversity:
        msg = "no maps yet"
        return plots.empty(msg), plots.empty(msg), NO_ANALYSIS
    div = analysis.prediction.diversity
    labels = [f"stage {s}" for s in STAGES]
    figs, parts = [], []
    for kind in ("spatial", "temporal"):
        m = div.get(kind)
        if m is None:
            figs.append(plots.empty(f"no {kind} attention in this model"))
            continue
        m = np.asarray(m, dtype=float)
        figs.append(plots.heatmap(m, f"{kind.capitalize()}: cosine similarity between stages",
                                  "", "", labels=labels, zmin=0, zmax=1, text=True, colorscale="Blues"))
        off = m[~np.eye(len(m), dtype=bool)]
        parts.append(f"{kind} {off.mean():.2f}")
    pred = analysis.prediction
    if parts and pred.attention_warnings:
        reading = (
            "Mean similarity between different stages: " + ", ".join(parts) + ". **This is not evidence "
            "that the stages look at different parts of the action**: some maps are degenerate.\n\n- "
            + "\n- ".join(pred.attention_warnings)
        )
    elif parts:
        reading = (
            "Mean similarity between different stages: " + ", ".join(parts) + ". Near 0: the stages "
            "attend to different places and moments (what the diversity losses ask for); near 1: "
            "they all look at the same thing."
        )
    else:
        reading = "This model has no attention modules, so there is nothing to compare."
    reading += quality_markdown(pred.attention_quality)
    return figs[0], figs[1], reading


def quality_markdown(quality: dict | None) -> str:
    """This video's spatial attention per stage: how spread it is and whether it sits on what moves."""
    rows = (quality or {}).get("spatial")
    if not rows:
        return ""
    lines = ["", "", "| this video | concentration (1/cells: one cell, 1: even) | attended cells | on-motion lift (> 1: on what moves) |",
             "|---|---|---|---|"]
    for stage, row in rows.items():
        conc, cells, lift = row.get("concentration"), row.get("effective_cells"), row.get("motion_lift")
        conc_text = "-" if conc is None else f"{conc:.2f}"
        cells_text = "-" if cells is None else f"{cells:.1f} of {row['cells']}"
        lift_text = "- (nothing moves)" if lift is None else f"{lift:.2f}"
        lines.append(f"| {stage} | {conc_text} | {cells_text} | {lift_text} |")
    return "\n".join(lines)


def facts_markdown(facts: dict) -> str:
    m = facts["model"]
    clip = facts["clip"]
    mods = [name for key, name in (("use_tda", "TDA"), ("use_sda", "SDA"), ("multi_level_fusion", "fusion"),
                                   ("diversity_loss", "diversity losses")) if m.get(key)]
    gflops = facts.get("gflops")
    lines = [
        f"### {facts['name']}",
        f"- **Model**: 3D ResNet-{m.get('depth')} (base width {m.get('base_width')}), "
        f"modules: {', '.join(mods) or 'none (plain backbone)'}",
        f"- **Parameters**: {facts['params'] / 1e6:.2f} M",
        f"- **Compute**: {gflops:.2f} GFLOPs per clip" if gflops is not None else "- **Compute**: not counted",
        f"  ({clip.get('num_frames')} frames x {clip.get('height')}x{clip.get('width')}, stride {clip.get('stride')})",
        f"- **Classes** ({len(facts['classes'])}): {', '.join(map(str, facts['classes'][:60]))}"
        + (" ..." if len(facts["classes"]) > 60 else ""),
    ]
    if facts.get("data_source"):
        lines.append(f"- **Data**: {facts['data_source']}")
    metrics = {k: v for k, v in facts.get("metrics", {}).items() if isinstance(v, (int, float))}
    if metrics:
        lines.append("- **Metrics**: " + ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()))
    tr = facts.get("training") or {}
    keys = [k for k in ("epochs", "epochs_completed", "optimizer", "lr", "batch_size", "init_checkpoint") if tr.get(k) is not None]
    if keys:
        lines.append("- **Training**: " + ", ".join(f"{k} {tr[k]}" for k in keys))
    return "\n".join(lines)


def whole_frame_view(pred) -> np.ndarray | None:
    """The window's middle frame whole, what the model did not see dimmed, its view outlined."""

    if pred.context_frame is None or pred.view_box is None:
        return None
    return view_on_frame(pred.context_frame, pred.view_box, min_side=240)


def build(ctx: AppContext, checkpoint_dd: gr.Dropdown, analysis: gr.State) -> dict:
    status = gr.Markdown(NO_ANALYSIS, label="What is shown", elem_id="inside-status")
    with gr.Accordion("Where each stage looks (spatial attention)", open=True):
        gr.Markdown("Red = positions that receive much attention at that stage, over the window the "
                    "model was most sure about. Stage 2 is early (fine detail), stage 5 late (coarse). "
                    "The model sees only the framed region of each frame (the square around what "
                    "moves, for the gesture models); the rest is dimmed on the left.")
        with gr.Row():
            view_img = gr.Image(label="What the model saw, on the whole frame", type="numpy", interactive=False,
                                height=240, elem_id="inside-view", buttons=["download"])
            images = [gr.Image(label=f"Stage {s}", type="numpy", interactive=False, height=240,
                               elem_id=f"inside-spatial-{s}", buttons=["download"]) for s in STAGES]
        with gr.Row():
            frame = gr.Slider(0, 31, value=0, step=1, label="Frame of the window", scale=4)
            play = gr.Button("Play", scale=1, size="sm")
            pause = gr.Button("Pause", scale=1, size="sm")
        timer = gr.Timer(0.4, active=False)
        with gr.Row():
            export_stage = gr.Radio(list(STAGES), value=5, label="Export the overlay of stage", scale=2)
            export_btn = gr.Button("Export overlay video", scale=1)
        with gr.Row():
            export_video = gr.Video(label="Overlay video", interactive=False, elem_id="inside-export-video")
            export_file = gr.File(label="Download", interactive=False)
    with gr.Accordion("When each stage looks (temporal attention)", open=True):
        t_stage = gr.Radio(list(STAGES), value=5, label="Stage")
        with gr.Row():
            t_heat = gr.Plot(label="Temporal attention matrix")
            with gr.Column():
                strip_img = gr.Image(label="Frames of the window", interactive=False, height=90,
                                 elem_id="inside-filmstrip")
                curve = gr.Plot(label="Attention each frame receives")
    with gr.Accordion("Do the stages look at different things? (diversity)", open=True):
        with gr.Row():
            div_s = gr.Plot(label="Spatial")
            div_t = gr.Plot(label="Temporal")
        reading = gr.Markdown(label="Reading of the diversity")
    with gr.Accordion("About this checkpoint", open=False):
        facts_md = gr.Markdown(label="About this checkpoint")
        with gr.Accordion("Full configuration (JSON)", open=False):
            facts_json = gr.JSON(label="Full configuration")

    @handler
    def render(analysis_value, stage):
        if analysis_value is None:
            empty = plots.empty("no maps yet")
            return (NO_ANALYSIS, None, *([None] * len(STAGES)), gr.update(value=0),
                    empty, None, plots.empty("no maps yet", 200), empty, empty, "")
        pred = analysis_value.prediction
        if not pred.attention:
            msg = (f"**{analysis_value.video_name}** was recognised without attention maps; tick "
                   "*Also compute the attention maps* in Recognise to see them here.")
            empty = plots.empty("no maps for this video")
            return (msg, whole_frame_view(pred), *([None] * len(STAGES)), gr.update(value=0),
                    empty, None, plots.empty("no maps", 200), empty, empty, "")
        n = len(pred.frames)
        a, b = pred.window_times[pred.frames_window]
        msg = (f"**{analysis_value.video_name}**: top class **{pred.topk[0][0]}** "
               f"({pred.topk[0][1]:.0%}). Maps of window {pred.frames_window + 1} of "
               f"{len(pred.window_times)} ({a:.1f}-{b:.1f} s), the one most sure of it; {n} frames.")
        heat, film, curve_fig = temporal_views(analysis_value, stage)
        d_s, d_t, read = diversity_views(analysis_value)
        return (msg, whole_frame_view(pred), *spatial_images(analysis_value, 0),
                gr.update(value=0, maximum=max(n - 1, 1)), heat, film, curve_fig, d_s, d_t, read)

    render_outputs = [status, view_img, *images, frame, t_heat, strip_img, curve, div_s, div_t, reading]

    @handler
    def on_frame(analysis_value, f):
        return spatial_images(analysis_value, f)

    @handler
    def advance(analysis_value, f):
        if analysis_value is None or not analysis_value.prediction.attention:
            return gr.update(), gr.Timer(active=False)
        n = len(analysis_value.prediction.frames)
        return (int(f or 0) + 1) % max(n, 1), gr.update()

    @handler
    def export(analysis_value, stage):
        pred = _maps(analysis_value)

        s = _stage(pred, stage or 5)
        if s.spatial is None:
            raise UserError("this model has no spatial attention (SDA off): nothing to export")
        frames = spatial_overlay(enlarge(pred.frames, EXPORT_MIN_SIDE), s.spatial[pred.frames_window])
        out_dir = scratch_dir()
        stem = Path(analysis_value.video_name).stem[:60] or "video"
        path = write_video(frames, out_dir / f"{stem}-stage{s.stage}-attention.mp4",
                           fps=max(2.0, min(pred.fps / 2, 12.0)))
        path = str(path or out_dir / f"{stem}-stage{s.stage}-attention.mp4")
        return path, path

    @handler
    def on_temporal_stage(analysis_value, stage):
        return temporal_views(analysis_value, stage)

    @handler
    def show_facts(checkpoint):
        if not ctx.default_checkpoint() and not checkpoint:
            return ctx.no_checkpoint_message(), None
        facts = ctx.facts(checkpoint)
        return facts_markdown(facts), {k: facts[k] for k in ("name", "model", "clip", "classes", "params",
                                                              "gflops", "metrics", "training", "data_source")}

    frame.change(on_frame, [analysis, frame], images, api_name="inside_frame", show_progress="hidden",
                 concurrency_limit=4)
    play.click(lambda: gr.Timer(active=True), None, timer, api_name="inside_play", api_visibility="undocumented")
    pause.click(lambda: gr.Timer(active=False), None, timer, api_name="inside_pause",
                api_visibility="undocumented")
    timer.tick(advance, [analysis, frame], [frame, timer], api_name="inside_tick",
               api_visibility="undocumented", show_progress="hidden")
    export_btn.click(export, [analysis, export_stage], [export_video, export_file], api_name="export_overlay",
                     concurrency_id="model", concurrency_limit=ctx.config.predict_concurrency)
    t_stage.change(on_temporal_stage, [analysis, t_stage], [t_heat, strip_img, curve], api_name="inside_temporal")
    checkpoint_dd.change(show_facts, [checkpoint_dd], [facts_md, facts_json], api_name="checkpoint_facts")
    return {"render": render, "render_inputs": [analysis, t_stage], "render_outputs": render_outputs,
            "show_facts": show_facts, "facts_outputs": [facts_md, facts_json], "images": images}
