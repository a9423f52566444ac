"""Hugging Face Spaces entry point: `python app.py` serves the ST-MANet app.

Starts on the first checkpoint in checkpoints/ (or STMANET_CHECKPOINT / --checkpoint), on CPU,
with no download. Settings: see app/config.py (environment variables) or `python app.py --help`.
GRADIO_SERVER_NAME / GRADIO_SERVER_PORT are honoured (Spaces sets them).
"""
from __future__ import annotations

import argparse
import logging
import os

from app import AppConfig, build_demo, launch_kwargs


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="ST-MANet Gradio app")
    p.add_argument("--checkpoint", help="checkpoint folder to start on (default: first in checkpoints/)")
    p.add_argument("--checkpoints-dir", help="folder of checkpoints for the model picker")
    p.add_argument("--runs-dir", help="where fine-tuning runs are written")
    p.add_argument("--data-root", help="server folders fine-tuning may read (nothing outside it)")
    p.add_argument("--examples-dir", help="example videos")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME"), help="bind address")
    p.add_argument("--port", type=int, default=None, help="port (default: GRADIO_SERVER_PORT or 7860)")
    return p.parse_args(argv)


def make_demo(args: argparse.Namespace | None = None):
    args = args or parse_args([])
    config = AppConfig.from_env(
        checkpoint=args.checkpoint, checkpoints_dir=args.checkpoints_dir, runs_dir=args.runs_dir,
        data_root=args.data_root, examples_dir=args.examples_dir,
    )
    return build_demo(config), config


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args()
    demo, config = make_demo(args)
    demo.launch(server_name=args.host, server_port=args.port, **launch_kwargs(config))
