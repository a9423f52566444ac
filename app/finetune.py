"""Tab "Fine-tune": choose data and a starting point, start/stop one background run, watch it live,
push its checkpoint to the Hub. All the work is `core.runs` (which calls `core.train`)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import gradio as gr

from core.checkpoint import read_meta
from core.hub import push_run
from core.runs import ACTIVE_STATES
from core.train import TrainConfig

from . import plots
from .context import AppContext, CheckpointDropdown, UserError, handler

log = logging.getLogger("app.finetune")

SOURCES = ("Upload a zip", "Folder on the server", "Dataset layout")
LAYOUTS = ("ucf101", "hmdb51", "diving48", "list")
NEW_MODELS = {
    "new: ST-MANet-10, width 16 (from scratch)": ("stmanet_r10", 16),
    "new: ST-MANet-18, width 32 (from scratch)": ("stmanet_r18", 32),
}
POLL_S = 2.0


def _fmt_s(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def status_markdown(st: dict) -> str:
    state = st.get("state", "idle")
    if state == "idle":
        return "No fine-tuning run on this server yet."
    cfg = st.get("config") or {}
    pct = 100 * float(st.get("progress") or 0)
    bar = "█" * int(pct // 5) + "░" * (20 - int(pct // 5))
    last = st.get("last_step") or {}
    lines = [
        f"**Run {st.get('run_id')}**: **{state}**"
        + (f" ({st['message']})" if st.get("message") and st.get("message") != state else ""),
        f"`{bar}` {pct:.0f}%  epoch {last.get('epoch', 0)}/{cfg.get('epochs', '?')}, "
        f"step {last.get('step', 0)}/{last.get('steps_per_epoch', '?')}",
        f"elapsed {_fmt_s(st.get('elapsed_s'))}, ETA {_fmt_s(st.get('eta_s')) if state in ACTIVE_STATES else '-'}"
        + (f", {last['clips_per_s']:.1f} clips/s" if isinstance(last.get("clips_per_s"), (int, float)) else "")
        + (f", loss {last['loss']:.3f}" if isinstance(last.get("loss"), (int, float)) else ""),
        f"started {st.get('started', '?')}"
        + (f", ended {st['ended']}" if st.get("ended") else ""),
    ]
    if st.get("error"):
        lines.append(f"**Error**: {st['error']}")
    if state in ("finished", "stopped") and st.get("checkpoint_dir"):
        lines.append(f"Checkpoint ready: it is now in the model picker as *run {st.get('run_id')}*.")
    if state == "interrupted":
        lines.append("The server restarted while this run was going; its last checkpoint is kept. "
                     "*Resume the last run* continues it.")
    return "\n\n".join(lines)


def build_config(ctx: AppContext, source, zip_file, folder, layout, layout_root, splits_dir, train_list,
                 val_list, class_list, split, start_from, epochs, lr, batch, frames, freeze, optimizer) -> dict:
    """The TrainConfig fields for a run from the tab's inputs; data paths confined to the roots."""
    values: dict = {}
    if source == SOURCES[0]:
        if not zip_file:
            raise UserError("Upload a zip of class folders (class_name/video.mp4) first.")
        zpath = Path(zip_file if isinstance(zip_file, str) else zip_file.name)
        if zpath.stat().st_size > ctx.config.max_zip_mb * 1024 * 1024:
            raise UserError(f"the zip is larger than {ctx.config.max_zip_mb:g} MB")
        values.update(data_layout="folder", data_source=f"uploaded zip {zpath.name}")  # unpacked last
    elif source == SOURCES[1]:
        path = ctx.runs.resolve_data_path(folder, kind="dir")
        values.update(data_layout="folder", data_root=str(path), data_source=f"server folder {folder}")
    elif source == SOURCES[2]:
        if layout not in LAYOUTS:
            raise UserError(f"pick a dataset layout: {', '.join(LAYOUTS)}")
        root = ctx.runs.resolve_data_path(layout_root, kind="dir")
        values.update(data_layout=layout, data_root=str(root), split=int(split or 1),
                      data_source=f"{layout} at {layout_root}")
        for key, value, kind in (("splits_dir", splits_dir, "dir"), ("train_list", train_list, "file"),
                                 ("val_list", val_list, "file"), ("class_list", class_list, "file")):
            if value and str(value).strip():
                values[key] = str(ctx.runs.resolve_data_path(value, kind=kind))
    else:
        raise UserError("choose where the training videos come from")

    if start_from in NEW_MODELS:
        name, width = NEW_MODELS[start_from]
        values.update(model=name, base_width=width, stride=1, height=112, width=112)
    else:
        ckpt = ctx.allowed_checkpoint(start_from)  # a listed checkpoint's folder
        meta = read_meta(Path(ckpt))
        clip = meta.get("clip") or {}
        # Fine-tune on clips cut the way the checkpoint was trained (sampling, motion crop, size).
        values.update(init_checkpoint=ckpt, stride=int(clip.get("stride", 1)),
                      height=int(clip.get("height", 112)), width=int(clip.get("width", 112)),
                      sampling=str(clip.get("sampling", "window")), motion_crop=bool(clip.get("motion_crop", False)))
    epochs, batch, frames, freeze = int(epochs), int(batch), int(frames), int(freeze)
    lr = float(lr)
    # this server's caps; what a value may be at all, TrainConfig says (checked with the memory below)
    for name, value, cap in (("epochs", epochs, 500), ("batch size", batch, 256), ("frames per clip", frames, 128)):
        if value > cap:
            raise UserError(f"{name} must be at most {cap} on this server")
    values.update(epochs=epochs, lr=lr, batch_size=batch, num_frames=frames, freeze_stages=freeze,
                  optimizer=optimizer or "sgd", num_workers=0, device="auto", show_progress=False,
                  lr_schedule="cosine", val_fraction=0.2)
    try:
        TrainConfig(**values)  # every field's range, before anything is unpacked
    except ValueError as exc:
        raise UserError(str(exc)) from None
    try:
        ctx.runs.check_memory(values)
    except ValueError as exc:
        raise UserError(f"{exc} (STMANET_MAX_RUN_MEMORY_MB sets the limit)") from None
    if source == SOURCES[0]:  # only once every other field is known to be good
        folder_path = ctx.runs.extract_zip(zpath, max_bytes=int(ctx.config.max_zip_mb * 1024 * 1024 * 4))
        values["data_root"] = str(folder_path)
    return values


def _default_frames(ctx: AppContext) -> int:
    try:
        meta = read_meta(Path(ctx.allowed_checkpoint(None)))
        return int((meta.get("clip") or {}).get("num_frames", 16))
    except (ValueError, OSError):
        return 16


def build(ctx: AppContext, checkpoint_dd: gr.Dropdown) -> dict:
    cfg = ctx.config
    root_note = (f"Server folders must lie under the data root `{cfg.data_root}`."
                 if cfg.data_root else "No data root is configured on this server: upload a zip.")
    gr.Markdown(
        "Fine-tune a model on your own videos: one folder per class. One run at a time per server; "
        "it goes on in the background if you close the page, and this page re-attaches to it. "
        + root_note
    )
    with gr.Row():
        with gr.Column():
            source = gr.Radio(list(SOURCES), value=SOURCES[0], label="Training videos")
            zip_file = gr.File(label=f"Zip of class folders (up to {cfg.max_zip_mb:g} MB)",
                               file_types=[".zip"], visible=True)
            folder = gr.Textbox(label="Folder of class folders (relative to the data root)",
                                placeholder="my_dataset", visible=False)
            with gr.Group(visible=False) as layout_group:
                layout = gr.Dropdown(list(LAYOUTS), value="ucf101", label="Layout")
                layout_root = gr.Textbox(label="Videos root (under the data root)")
                splits_dir = gr.Textbox(label="Splits folder (UCF-101 / HMDB-51)")
                train_list = gr.Textbox(label="Train list (list layout) / train JSON (Diving48)")
                val_list = gr.Textbox(label="Validation list / test JSON")
                class_list = gr.Textbox(label="Class list / vocab JSON (optional)")
                split = gr.Dropdown([1, 2, 3], value=1, label="Split")
        with gr.Column():
            ckpt_choices = ctx.checkpoint_choices()
            start_from = CheckpointDropdown(
                choices=[*ckpt_choices, *[(k, k) for k in NEW_MODELS]],
                value=ctx.default_checkpoint() or next(iter(NEW_MODELS)),
                label="Start from", allow_custom_value=True,
            )
            with gr.Row():
                epochs = gr.Number(5, label="Epochs", precision=0, minimum=1, maximum=500)
                lr = gr.Number(0.001, label="Learning rate", minimum=0)
                batch = gr.Number(8, label="Batch size", precision=0, minimum=1, maximum=256)
            with gr.Row():
                frames = gr.Number(_default_frames(ctx), label="Frames per clip", precision=0, minimum=1,
                                   maximum=128)
                optimizer = gr.Radio(["sgd", "adamw"], value="adamw", label="Optimizer")
            freeze = gr.Slider(0, 5, value=2, step=1, label="Freeze early stages",
                               info="0: train everything; 1: freeze the stem; n: the stem and stages 2..n")
            with gr.Row():
                start = gr.Button("Start fine-tuning", variant="primary")
                stop = gr.Button("Stop (saves a checkpoint)", variant="stop")
                resume = gr.Button("Resume the last run", variant="secondary")
    status_md = gr.Markdown("No fine-tuning run on this server yet.", label="Run status", elem_id="finetune-status")
    with gr.Row():
        loss_plot = gr.Plot(label="Loss")
        acc_plot = gr.Plot(label="Accuracy")
        div_plot = gr.Plot(label="Diversity")
    with gr.Accordion("Push a checkpoint to the Hugging Face Hub", open=False):
        gr.Markdown("The token is used for this one upload and is not stored or logged.")
        with gr.Row():
            push_ckpt = CheckpointDropdown(choices=ckpt_choices, label="Checkpoint", allow_custom_value=True)
            repo_id = gr.Textbox(label="Repo id", placeholder="your-name/stmanet-my-data")
            token = gr.Textbox(label="Hugging Face token (write)", type="password", placeholder="hf_...")
        push = gr.Button("Push to the Hub")
        push_result = gr.Markdown(label="Push result")
    timer = gr.Timer(POLL_S, active=True)
    seen = gr.State(None)  # what the plots last showed, to skip redrawing an unchanged run

    def on_source(choice):
        return (gr.update(visible=choice == SOURCES[0]), gr.update(visible=choice == SOURCES[1]),
                gr.update(visible=choice == SOURCES[2]))

    source.change(on_source, source, [zip_file, folder, layout_group], api_name="finetune_source",
                  api_visibility="undocumented", queue=False)

    @handler
    def start_run(source, zip_file, folder, layout, layout_root, splits_dir, train_list, val_list,
                  class_list, split, start_from, epochs, lr, batch_size, frames, freeze, optimizer):
        ctx.runs.ensure_idle()  # before unpacking a zip for nothing
        values = build_config(ctx, source, zip_file, folder, layout, layout_root, splits_dir, train_list,
                              val_list, class_list, split, start_from, epochs, lr, batch_size, frames,
                              freeze, optimizer)
        try:
            run_id = ctx.runs.start(values)
        except BaseException:
            if source == SOURCES[0] and values.get("data_root"):
                ctx.runs.discard_upload(values["data_root"])  # a refused request leaves nothing behind
            raise
        gr.Info(f"Fine-tuning run {run_id} started.")
        return poll(None, force=True)

    @handler
    def stop_run():
        if ctx.runs.stop():
            gr.Info("Stopping after the current step; a checkpoint is saved.")
        else:
            state = ctx.runs.public_status().get("state")
            gr.Warning(f"The run has already ended ({state})." if state in ("finished", "stopped", "failed")
                       else "No run is going.")
        return poll(None, force=True)

    @handler
    def resume_run():
        run_id = ctx.runs.resume()
        gr.Info(f"Run {run_id} resumes from its last checkpoint.")
        return poll(None, force=True)

    def poll(last_seen, force: bool = False):
        st = ctx.runs.public_status()
        sig = [st.get("run_id"), st.get("state"), len(st.get("steps") or []), len(st.get("epochs") or [])]
        choices = ctx.checkpoint_choices()
        seen_now = {"sig": sig, "choices": [list(c) for c in choices]}
        md = status_markdown(st)
        last_seen = last_seen or {}
        # the pickers change only when the list of checkpoints does (a run just wrote one)
        if force or last_seen.get("choices") != seen_now["choices"]:
            ckpt_update, push_update = gr.update(choices=choices), gr.update(choices=choices)
            start_update = gr.update(choices=[*choices, *[(k, k) for k in NEW_MODELS]])
        else:
            ckpt_update, push_update, start_update = gr.update(), gr.update(), gr.update()
        if not force and last_seen.get("sig") == sig:
            return md, gr.update(), gr.update(), gr.update(), seen_now, ckpt_update, push_update, start_update
        loss_fig, acc_fig, div_fig = plots.training(st)
        if st.get("state") in ("finished", "stopped") and st.get("checkpoint_dir"):
            key = ctx.key_of(st["checkpoint_dir"])
            if key is not None:
                push_update = gr.update(choices=choices, value=key)
        return md, loss_fig, acc_fig, div_fig, seen_now, ckpt_update, push_update, start_update

    @handler
    def poll_handler(last_seen):
        return poll(last_seen)

    @handler
    def push_handler(checkpoint, repo, tok):
        if not checkpoint:
            raise UserError("choose the checkpoint to push")
        ckpt = ctx.allowed_checkpoint(checkpoint)
        url = push_run(ckpt, repo, tok, allowed_roots=ctx.runs.checkpoint_roots())
        return f"Pushed to [{url}]({url}).", ""  # the token box is emptied

    status_outputs = [status_md, loss_plot, acc_plot, div_plot, seen, checkpoint_dd, push_ckpt, start_from]

    @handler
    def on_start_from(choice):
        """Frames per clip default to what the starting checkpoint was trained with."""
        if not choice or choice in NEW_MODELS:
            return gr.update(value=16)
        meta = read_meta(Path(ctx.allowed_checkpoint(choice)))
        return gr.update(value=int((meta.get("clip") or {}).get("num_frames", 16)))

    start_from.change(on_start_from, start_from, frames, api_name="finetune_start_from",
                      api_visibility="undocumented")
    inputs = [source, zip_file, folder, layout, layout_root, splits_dir, train_list, val_list, class_list,
              split, start_from, epochs, lr, batch, frames, freeze, optimizer]
    start.click(start_run, inputs, status_outputs, api_name="finetune_start", concurrency_limit=1,
                concurrency_id="finetune_control")
    stop.click(stop_run, None, status_outputs, api_name="finetune_stop", concurrency_limit=1,
               concurrency_id="finetune_control")
    resume.click(resume_run, None, status_outputs, api_name="finetune_resume", concurrency_limit=1,
                 concurrency_id="finetune_control")
    timer.tick(poll_handler, [seen], status_outputs, api_name="finetune_poll", show_progress="hidden",
               api_visibility="undocumented")
    push.click(push_handler, [push_ckpt, repo_id, token], [push_result, token], api_name="push_to_hub",
               concurrency_limit=1)
    return {"poll": poll_handler, "poll_inputs": [seen], "poll_outputs": status_outputs,
            "start_from": start_from}


def status_json(ctx: AppContext) -> dict:
    """The run status without the per-step lists (for the API endpoint `finetune_status`)."""
    st = dict(ctx.runs.public_status())
    st["num_steps"] = len(st.pop("steps", []) or [])
    st["num_epochs"] = len(st.get("epochs") or [])
    return json.loads(json.dumps(st, default=str))
