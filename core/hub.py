"""Hugging Face Hub round trip from the command line (only ever on an explicit user action).

    python -m core.hub push runs/gestures/best user/stmanet-gestures     # token from $HF_TOKEN or a prompt
    python -m core.hub pull user/stmanet-gestures checkpoints/from-hub

A checkpoint folder is already the Hub repo layout (model.safetensors, config.json, README.md),
so pushing uploads the folder as is (never training_state.pt) and pulling copies the repo's
weights, config and card into a folder `load_checkpoint` reads. The token is read from the
environment or typed at a hidden prompt; it is never printed or written.
"""
from __future__ import annotations

import argparse
import getpass
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

from .checkpoint import (CARD, CONFIG, WEIGHTS, CheckpointError, download_checkpoint, is_complete, load_checkpoint,
                         push_to_hub, unusable_reason)
from .tokens import REPO_ID, scrub
from .uploads import PathNotAllowedError, resolve_data_path

log = logging.getLogger(__name__)


def pull(repo_id: str, destination: str | Path, token: str | None = None, revision: str | None = None) -> Path:
    """Download a Hub checkpoint into `destination` and check that it loads."""
    source = download_checkpoint(repo_id, revision=revision, token=token)
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS, CONFIG, CARD):
        if (source / name).is_file():
            shutil.copyfile(source / name, destination / name)
    load_checkpoint(destination)  # a download that does not load is an error now, not in the app later
    return destination


class PushError(RuntimeError):
    """Pushing to the Hub failed; the message never contains the token."""


def push_run(
    checkpoint_dir: str | os.PathLike,
    repo_id: str,
    token: str,
    *,
    allowed_roots: list[str | os.PathLike] | None = None,
    api: Any = None,
    push_fn: Callable | None = None,
) -> str:
    """Push a checkpoint folder to the Hub repo `repo_id`; return the call's result as text.

    The token goes only to `core.checkpoint.push_to_hub`; it is not logged, not returned and
    masked out of any error message (`PushError`).
    """
    repo_id = (repo_id or "").strip()
    if not REPO_ID.match(repo_id):
        raise PushError(f"'{repo_id}' is not a Hub repo id; it looks like 'user-or-org/model-name'")
    if not token or not str(token).strip():
        raise PushError("a Hugging Face token with write access is needed to push")
    token = str(token).strip()
    folder = Path(checkpoint_dir)
    if allowed_roots is not None:
        try:
            folder = resolve_data_path(folder, allowed_roots, kind="dir")
        except PathNotAllowedError as exc:
            raise PushError(f"that checkpoint cannot be pushed: {exc}") from None
    if not is_complete(folder):
        raise PushError(f"'{folder.name}' is not a checkpoint folder ({unusable_reason(folder)})")
    push_fn = push_fn or push_to_hub
    log.info("pushing checkpoint %s to hub repo %s", folder, repo_id)  # never the token
    try:
        result = push_fn(folder, repo_id, token, api=api)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a clean message
        msg = scrub(f"{type(exc).__name__}: {exc}", token)
        log.warning("push to %s failed: %s", repo_id, msg)
        raise PushError(f"push to '{repo_id}' failed: {msg}") from None
    return scrub(str(result) if result is not None else f"https://huggingface.co/{repo_id}", token)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    push_p = sub.add_parser("push", help="upload a checkpoint folder to a Hub model repo")
    push_p.add_argument("folder")
    push_p.add_argument("repo_id")
    push_p.add_argument("--private", action="store_true")
    pull_p = sub.add_parser("pull", help="download a Hub checkpoint into a folder")
    pull_p.add_argument("repo_id")
    pull_p.add_argument("folder")
    pull_p.add_argument("--revision")
    args = parser.parse_args(argv)
    token = os.environ.get("HF_TOKEN")
    try:
        if args.command == "push":
            token = token or getpass.getpass("Hugging Face token (input hidden): ")
            print(push_to_hub(args.folder, args.repo_id, token, private=args.private))
        else:
            print(pull(args.repo_id, args.folder, token=token, revision=args.revision))
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
