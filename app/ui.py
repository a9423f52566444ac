"""The whole page: a model picker above three tabs (Recognise, Look inside, Fine-tune)."""
from __future__ import annotations

import logging
import threading

import gradio as gr

from . import finetune, inside, recognise
from .config import AppConfig
from .context import AppContext, CheckpointDropdown, handler

log = logging.getLogger("app")

TITLE = "ST-MANet: what a video action recogniser looks at"
INTRO = (
    "ST-MANet (spatio-temporal multi-level attention) classifies the action in a video, and its "
    "attention modules show **where** (spatial) and **when** (temporal) each stage of the network "
    "looks. Recognise a video, look inside the model, or fine-tune it on your own classes."
)


def build_demo(config: AppConfig | None = None, context: AppContext | None = None,
               warm_up: bool = True) -> gr.Blocks:
    ctx = context or AppContext(config or AppConfig.from_env())
    default = ctx.default_checkpoint()
    problem = ctx.start_problem()
    if problem:
        log.warning("%s", problem)
    with gr.Blocks(title="ST-MANet", delete_cache=(3600, 6 * 3600)) as demo:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        banner = [f"**Warning.** {problem}"] if problem else []
        if not default:
            banner.append(f"**No model available.** {ctx.no_checkpoint_message()}")
        no_ckpt = gr.Markdown("\n\n".join(banner), elem_id="no-checkpoint")
        with gr.Row():
            checkpoint_dd = CheckpointDropdown(
                choices=ctx.checkpoint_choices(), value=default, label="Model (checkpoint)",
                allow_custom_value=True, scale=4, elem_id="checkpoint-picker",
            )
            refresh = gr.Button("Refresh list", scale=1, size="sm")
        analysis = gr.State(None, time_to_live=3600)  # the last analysis, per browser session
        with gr.Tabs():
            with gr.Tab("Recognise", id="recognise"):
                rec = recognise.build(ctx, checkpoint_dd, analysis)
            with gr.Tab("Look inside", id="inside"):
                ins = inside.build(ctx, checkpoint_dd, analysis)
            with gr.Tab("Fine-tune", id="finetune"):
                ft = finetune.build(ctx, checkpoint_dd)

        # A new analysis redraws the Look inside tab.
        rec["event"].success(ins["render"], ins["render_inputs"], ins["render_outputs"],
                          api_name="inside_render", api_visibility="undocumented")

        @handler
        def refresh_choices(current):
            choices = ctx.checkpoint_choices()
            values = [p for _, p in choices]
            value = current if current in values else (values[0] if values else None)
            return gr.update(choices=choices, value=value)

        refresh.click(refresh_choices, checkpoint_dd, checkpoint_dd, api_name="list_checkpoints")

        @handler
        def finetune_status() -> dict:
            """The current (or latest) fine-tuning run: state, progress, ETA, per-epoch metrics."""
            return finetune.status_json(ctx)

        # A hidden button rather than gr.api, whose outputs can only be named "1st", "2nd", ...
        status_out = gr.JSON(label="Run status", visible=False)
        gr.Button(visible=False).click(finetune_status, None, status_out, api_name="finetune_status")

        # On page load (and reload): the facts of the model, and re-attach to a running job.
        demo.load(ins["show_facts"], [checkpoint_dd], ins["facts_outputs"], api_name="on_load_facts",
                  api_visibility="undocumented")
        demo.load(ft["poll"], ft["poll_inputs"], ft["poll_outputs"], api_name="on_load_runs",
                  api_visibility="undocumented")
    if warm_up:
        threading.Thread(target=ctx.warm_up, name="warm-up", daemon=True).start()
    demo.queue(default_concurrency_limit=ctx.config.predict_concurrency, max_size=64)
    demo.ctx = ctx  # for tests and app.py
    demo.no_checkpoint = no_ckpt
    return demo


# The player tries an upload before the server's preview (core.preview) replaces it; for a
# container the preview is made for, that first attempt's "Video not playable" error is expected
# and not shown. Other errors (a preview, an MP4, a WebM that fails) still are.
UNPLAYABLE_UPLOAD_QUIET = """<script>
window.addEventListener("error", (event) => {
  const v = event.target;
  if (v instanceof HTMLVideoElement && v.closest("#recognise-video")
      && !/[.](mp4|m4v|mov|webm|mkv)([?#]|$)/i.test(v.currentSrc || v.src || "")) {
    event.stopImmediatePropagation();
  }
}, true);
</script>"""


def launch_kwargs(config: AppConfig) -> dict:
    """What `demo.launch` needs beyond the defaults: upload cap, files it may serve, no run
    history (it would keep inputs, the Hub token among them, in the browser)."""
    allowed = [str(p) for p in (config.examples_dir,) if p is not None]
    return dict(
        max_file_size=config.max_file_size,
        allowed_paths=allowed,
        run_history=False,
        state_session_capacity=500,  # sessions whose last analysis (about 1 MB) is kept
        show_error=True,  # our handlers' gr.Error messages; never tracebacks
        footer_links=["api", "gradio"],
        head=UNPLAYABLE_UPLOAD_QUIET,
    )
