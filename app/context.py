"""What the tabs share: settings, the checkpoint picker, loaded predictors, the run manager, and
`handler`, the wrapper that turns every failure into a clear message on the page.

No model maths here: predictions come from `core.predict`, pictures from `core.attention_maps`,
runs from `core.runs`.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from core.checkpoint import CONFIG, WEIGHTS, CheckpointError, saved_stamp, unusable_reason
from core.data.video import VideoError
from core.predict import Predictor
from core.hub import PushError
from core.runs import RunBusyError, RunManager
from core.tokens import scrub
from core.uploads import PathNotAllowedError, ZipRejectedError

from .config import AppConfig

log = logging.getLogger("app")


class UserError(ValueError):
    """A problem the user can fix; shown as is."""


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is written for a person: shown on the page as they are."""
    return (UserError, PathNotAllowedError, ZipRejectedError, RunBusyError, PushError, FileNotFoundError,
            VideoError, CheckpointError)


_UPLOAD_DIR = re.compile(r"(?:[^\s'\"]*/)?gradio/[0-9a-f]{16,}/")


_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])(?:/[\w.\-~+@%]+)+/([\w.\-~+@%]+/[\w.\-~+@%]+)")


def tidy(message: str) -> str:
    """A message for the page: no token-like strings, no server temp folders of uploads, no
    absolute server paths (a path keeps its last two parts: `<run id>/checkpoint`)."""
    return _ABSOLUTE_PATH.sub(r"\1", _UPLOAD_DIR.sub("", scrub(message)))


def scratch_dir(max_age_s: float = 3600) -> Path:
    """A fresh folder for one generated file (an export, a preview) under one temp root; folders
    older than an hour go (gradio has served its own copy by then)."""
    root = Path(tempfile.gettempdir()) / "stmanet-exports"
    root.mkdir(exist_ok=True)
    now = time.time()
    for old in root.iterdir():
        try:
            if now - old.stat().st_mtime > max_age_s:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    return Path(tempfile.mkdtemp(dir=root))


def handler(fn: Callable) -> Callable:
    """Wrap an event handler: expected errors become `gr.Error(message)`; anything else is logged
    with its traceback on the server and the page gets a short message with a reference id.
    `gr.Error` raised inside passes through. No traceback ever reaches the page."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except _expected_errors() as exc:
            msg = tidy(str(exc)) or type(exc).__name__
            log.info("%s: %s", fn.__name__, msg)
            raise gr.Error(msg, print_exception=False) from None
        except MemoryError:
            log.exception("%s ran out of memory", fn.__name__)
            raise gr.Error(
                "The server ran out of memory on this request; try a shorter or smaller video.",
                print_exception=False,
            ) from None
        except ValueError as exc:  # bad values, said in words by the code that refused them
            msg = tidy(str(exc)) or "that input was not accepted"
            log.warning("%s refused input: %s", fn.__name__, msg)
            raise gr.Error(msg, print_exception=False) from None
        except Exception:  # noqa: BLE001
            ref = secrets.token_hex(3)
            log.exception("%s failed unexpectedly (ref %s)", fn.__name__, ref)
            raise gr.Error(
                f"Something went wrong on the server (ref {ref}); it has been logged. "
                "Try again, or with another file.",
                print_exception=False,
            ) from None

    return wrapper


class CheckpointDropdown(gr.Dropdown):
    """A checkpoint picker whose API type is any checkpoint key, not the choices it was built
    with: runs that finish later are valid too (`/list_checkpoints` gives the current keys)."""

    def api_info(self) -> dict:
        return {"type": "string", "description": "a checkpoint key, as listed by /list_checkpoints "
                                                 "(shipped models and finished fine-tuning runs)"}

    def get_block_name(self) -> str:
        return "dropdown"  # the browser draws it with the Dropdown's own front end


class AppContext:
    """Shared state of one server: settings, runs and loaded models (a small LRU)."""

    def __init__(self, config: AppConfig, run_manager: RunManager | None = None, max_loaded: int = 2):
        self.config = config
        self.runs = run_manager or RunManager(
            config.runs_dir,
            config.data_root,
            checkpoints_root=config.checkpoints_dir,
            extra_checkpoints=[p for p in [config.checkpoint, *config.extra_checkpoints] if p],
            max_uploads_bytes=int(config.max_uploads_mb * 1e6),
            max_run_memory_bytes=int(config.max_run_memory_mb * 1e6),
        )
        self._lock = threading.Lock()
        self._predictors: OrderedDict[str, Any] = OrderedDict()
        self._facts: dict[tuple, dict] = {}
        self._max_loaded = max_loaded
        # where predictions run: STMANET_DEVICE=cpu|cuda|cuda:N|mps; unset or "auto": CUDA, then MPS, then CPU
        device = os.environ.get("STMANET_DEVICE", "auto").strip().lower()
        self.device = None if device in ("", "auto") else device

    # -- checkpoints ---------------------------------------------------------------------------
    # The picker's values are short keys ("gestures_r18", "run/20261125-130102-ab12"), not server
    # paths: stable for gradio_client calls, and no folder layout shown to the public.
    def _key(self, path: str) -> str:
        p = Path(path)
        try:
            rel = p.relative_to(self.runs.runs_root)
            return "run/" + rel.parts[0]
        except ValueError:
            return p.name

    def _checkpoint_table(self) -> list[tuple[str, str, str]]:
        """(label, key, folder) of every checkpoint this server offers."""
        try:
            listed = self.runs.list_checkpoints()
        except OSError:
            log.exception("listing checkpoints failed")
            return []
        out, keys = [], set()
        for label, path in listed:
            key = self._key(path)
            base, n = key, 2
            while key in keys:
                key, n = f"{base}~{n}", n + 1
            keys.add(key)
            out.append((label, key, path))
        return out

    def checkpoint_choices(self) -> list[tuple[str, str]]:
        """(label, key) pairs for a gr.Dropdown."""
        return [(label, key) for label, key, _ in self._checkpoint_table()]

    def default_checkpoint(self) -> str | None:
        """The key of the checkpoint the app starts on."""
        table = self._checkpoint_table()
        if self.config.checkpoint is not None:
            want = str(Path(self.config.checkpoint).resolve())
            for _, key, path in table:
                if path == want:
                    return key
        return table[0][1] if table else None

    def start_problem(self) -> str | None:
        """Why the configured start checkpoint (STMANET_CHECKPOINT) is not what the app serves, in
        words naming the folder (not its server path); None when it is served or none was set."""
        if self.config.checkpoint is None:
            return None
        folder = Path(self.config.checkpoint)
        if any(path == str(folder.resolve()) for _, _, path in self._checkpoint_table()):
            return None
        reason = unusable_reason(folder) or "it could not be listed"
        fallback = self.default_checkpoint()
        served = f"serving '{fallback}' instead" if fallback else "no other model is available"
        return f"The start checkpoint '{folder.name}' cannot be used: {reason}; {served}."

    def no_checkpoint_message(self) -> str:
        return (
            f"No model checkpoint was found (looked in {self.config.checkpoints_dir.name}/"
            + (f" and {self.config.checkpoint}" if self.config.checkpoint else "")
            + f"). Put a checkpoint folder ({WEIGHTS} + {CONFIG}) there, or set "
            "STMANET_CHECKPOINT, then restart the app."
        )

    def allowed_checkpoint(self, checkpoint: str | None) -> str:
        """The folder of a listed checkpoint, by key (nothing else is ever loaded)."""
        if not checkpoint:
            checkpoint = self.default_checkpoint()
            if checkpoint is None:
                raise UserError(self.no_checkpoint_message())
        for _, key, path in self._checkpoint_table():
            if checkpoint == key:
                return path
        raise UserError(f"'{checkpoint}' is not one of this server's checkpoints; pick one from the list")

    def key_of(self, folder: str) -> str | None:
        real = str(Path(folder).resolve())
        for _, key, path in self._checkpoint_table():
            if path == real:
                return key
        return None

    @staticmethod
    def _stamp(path: str) -> tuple:
        """Changes when the folder's checkpoint is saved again (a run saves every epoch)."""
        return (path, *saved_stamp(path))

    def predictor(self, checkpoint: str | None):
        """A loaded `core.predict.Predictor` for a listed checkpoint key (cached; reloaded when
        the checkpoint on disk changes)."""
        path = self.allowed_checkpoint(checkpoint)
        stamp = self._stamp(path)
        with self._lock:
            pred = self._predictors.get(stamp)
            if pred is not None:
                self._predictors.move_to_end(stamp)
                return pred
            log.info("loading checkpoint %s", path)
            pred = Predictor(path, device=self.device, threads=self.config.predict_threads)
            for old in [k for k in self._predictors if k[0] == path]:
                del self._predictors[old]
            self._predictors[stamp] = pred
            while len(self._predictors) > self._max_loaded:
                self._predictors.popitem(last=False)
            return pred

    def facts(self, checkpoint: str | None) -> dict:
        """The checkpoint's facts for the Look inside tab, computed once per checkpoint version:
        config, classes, parameters, GFLOPs per clip (torch.utils.flop_counter), metrics."""
        path = self.allowed_checkpoint(checkpoint)
        stamp = self._stamp(path)
        with self._lock:
            if stamp in self._facts:
                return self._facts[stamp]
        facts = self.predictor(checkpoint).facts()
        facts.update(name=self.key_of(path) or Path(path).name, training=self.runs.public(facts["training"]),
                     data_source=self.runs.public(facts["data_source"]))
        with self._lock:
            self._facts[stamp] = facts
        return facts

    def warm_up(self) -> None:
        """Load the default model and count its FLOPs now, so the first visitor doesn't wait."""
        key = self.default_checkpoint()
        if key is None:
            return
        try:
            self.facts(key)
            log.info("warmed up checkpoint %s", key)
        except Exception:  # noqa: BLE001 - the page will say what is wrong when asked
            log.exception("warming up checkpoint %s failed", key)


def env_flag(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in ("1", "true", "yes", "on")
