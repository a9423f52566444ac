"""The Gradio app: layout and wiring only (one module per tab); the work is done by `core/`."""
from .config import AppConfig
from .context import AppContext, handler
from .ui import build_demo, launch_kwargs

__all__ = ["AppConfig", "AppContext", "build_demo", "handler", "launch_kwargs"]
