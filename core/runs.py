"""Fine-tuning runs for a server: one at a time, in the background, confined to configured roots.

The app's Fine-tune tab calls only this module. What lives here:

- `RunManager(runs_root, data_root)`: starts `core.train.train` in a background thread (a closed
  browser tab does not stop it), refuses a second run while one is going (`RunBusyError`), asks a
  run to stop (`stop()`), and reads a run's state back from its folder (`status()`), so a browser
  reload, or a new `RunManager` on the same folder, re-attaches to it. `list_checkpoints()` lists
  the shipped checkpoints and every run's checkpoint, so a finished run appears at once.
Paths a request may touch and zip uploads: `core.uploads`; pushing a run's checkpoint to the
Hub: `core.hub.push_run`; masking tokens: `core.tokens`.

Run folder layout: `<runs_root>/<run_id>/` holds `run.json` (this module's record: state, times,
the config with no secrets in it, the process id), `metrics.jsonl` (written by the trainer, one
JSON per callback event) and `checkpoint/`. Uploaded zips are unpacked under
`<runs_root>/uploads/<id>/`; one that no run uses is deleted an hour later (`prune_uploads`,
on the next upload).

Why this module is long (~720 lines): it is one class, RunManager, whose start/stop/resume and
status readers share its on-disk record and its lock; path confinement and zips (core.uploads),
the Hub push (core.hub) and tokens (core.tokens) are already out of it.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .checkpoint import is_complete, portable
from .memory import MemoryEstimate, training_memory
from .tokens import scrub
from .train import TrainConfig, run_model_config, train
from .uploads import (DEFAULT_ZIP_MAX_BYTES, PathNotAllowedError, ZipRejectedError, extract_zip, is_within,
                      resolve_data_path, tree_bytes)

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_SUBDIR = "checkpoint"
UPLOADS_SUBDIR = "uploads"
UPLOAD_GRACE_S = 3600.0  # an unpacked upload no run uses is kept this long

# Config keys that name paths a run reads; each must lie under an allowed data root.
DATA_PATH_KEYS = ("data_root", "train_list", "val_list", "class_list", "splits_dir")
# States a run can be in. "interrupted": the record says running, but the process is gone.
ACTIVE_STATES = ("starting", "running", "stopping")
FINAL_STATES = ("finished", "stopped", "failed", "interrupted")


class RunBusyError(RuntimeError):
    """A run is already going on this server."""


# ---------------------------------------------------------------------------------------------
# Runs


def _now_iso() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, TypeError, ValueError):
        return False
    return True


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def _config_to_dict(cfg: Any) -> dict:
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return dataclasses.asdict(cfg)
    if isinstance(cfg, Mapping):
        return dict(cfg)
    if hasattr(cfg, "__dict__"):
        return dict(vars(cfg))
    raise TypeError(f"a run config must be a dataclass or a mapping, got {type(cfg).__name__}")


_SECRET_KEY = re.compile(r"token|secret|password|api_key", re.I)


def _public_config(cfg: dict) -> dict:
    """The config as recorded in run.json: no key that looks like a secret, paths as text."""
    return {
        k: (str(v) if isinstance(v, os.PathLike) else v)
        for k, v in cfg.items()
        if not _SECRET_KEY.search(k)
    }


class _MetricsCache:
    """Reads a growing metrics.jsonl incrementally (offset kept per file)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, tuple[int, list[dict]]] = {}

    def read(self, path: Path) -> list[dict]:
        key = str(path)
        with self._lock:
            offset, events = self._files.get(key, (0, []))
            try:
                size = path.stat().st_size
            except OSError:
                return []
            if size < offset:  # rewritten (resume): start again
                offset, events = 0, []
            if size > offset:
                with open(path, "rb") as fh:
                    fh.seek(offset)
                    data = fh.read(size - offset)
                # only complete lines; a half-written last line waits for the next poll
                end = data.rfind(b"\n")
                if end >= 0:
                    events = list(events)
                    for line in data[: end + 1].splitlines():
                        line = line.strip()
                        if not line:
                            continue
                        try:
                            ev = json.loads(line)
                        except ValueError:
                            continue
                        if isinstance(ev, dict):
                            events.append(ev)
                    offset += end + 1
            self._files[key] = (offset, events)
            return events


# Runs going in this process, keyed by run folder: shared by every RunManager in the process,
# so "one run at a time per server" holds even if the app builds two managers.
_ACTIVE_LOCK = threading.Lock()
_ACTIVE: dict[str, "_ActiveRun"] = {}
_RECORD_LOCK = threading.Lock()


@dataclasses.dataclass
class _ActiveRun:
    run_id: str
    run_dir: Path
    thread: threading.Thread
    stop_event: threading.Event
    events: list = dataclasses.field(default_factory=list)  # callback events, in case no file
    seen_step: bool = False
    trained: bool = False  # the trainer has returned: a stop request can no longer stop anything


def _default_train(cfg, callback=None, stop_event=None):
    return train(cfg, callback=callback, stop_event=stop_event)


def _default_config(values: dict):
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown training options: {', '.join(unknown)}")
    return TrainConfig(**values)


class RunManager:
    """One fine-tuning run at a time, in a background thread, with its state on disk."""

    def __init__(
        self,
        runs_root: str | os.PathLike,
        data_root: str | os.PathLike | None,
        *,
        checkpoints_root: str | os.PathLike | None = None,
        extra_checkpoints: list[str | os.PathLike] | None = None,
        train_fn: Callable | None = None,
        config_factory: Callable[[dict], Any] | None = None,
        max_uploads_bytes: int | None = None,
        max_run_memory_bytes: int | None = None,
    ) -> None:
        self.runs_root = Path(runs_root).expanduser().resolve()
        self.runs_root.mkdir(parents=True, exist_ok=True)
        self.data_root = Path(data_root).expanduser().resolve() if data_root else None
        self.uploads_root = self.runs_root / UPLOADS_SUBDIR
        self.checkpoints_root = (
            Path(checkpoints_root).expanduser().resolve() if checkpoints_root else None
        )
        self.extra_checkpoints = [Path(p).expanduser().resolve() for p in (extra_checkpoints or [])]
        self.max_uploads_bytes = max_uploads_bytes  # cap on everything unpacked under uploads/
        self.max_run_memory_bytes = max_run_memory_bytes  # cap on a run's memory estimate (core.memory)
        self._train = train_fn or _default_train
        self._make_config = config_factory or _default_config
        self._start_lock = threading.Lock()
        self._metrics = _MetricsCache()

    # -- roots ---------------------------------------------------------------------------------
    @property
    def data_roots(self) -> list[Path]:
        """Where a run may read data: the configured data root and the unpacked uploads."""
        roots = [self.uploads_root]
        if self.data_root is not None:
            roots.insert(0, self.data_root)
        return roots

    def resolve_data_path(self, user_path: str, *, kind: str | None = None) -> Path:
        if self.data_root is None:
            raise PathNotAllowedError(
                "this server has no data root configured, so server-side folders cannot be used; "
                "upload a zip instead"
            )
        return resolve_data_path(user_path, [self.data_root], kind=kind)

    def extract_zip(self, zip_path: str | os.PathLike, **limits) -> Path:
        """Unpack an uploaded zip under `uploads/`, first pruning the unpacked uploads no run uses.
        With `max_uploads_bytes` the zip may fill only what is left of that space."""
        self.prune_uploads()
        if self.max_uploads_bytes is not None:
            left = self.max_uploads_bytes - tree_bytes(self.uploads_root)
            if left <= 0:
                raise ZipRejectedError(
                    f"the server's space for unpacked uploads ({self.max_uploads_bytes / 1e6:.0f} MB) is full; "
                    "uploads that no run uses are deleted an hour after they were unpacked: try again later")
            limits["max_bytes"] = min(limits.get("max_bytes", DEFAULT_ZIP_MAX_BYTES), left)
        return extract_zip(zip_path, self.uploads_root, **limits)

    def discard_upload(self, folder: str | os.PathLike) -> bool:
        """Delete an unpacked upload now (a refused or failed request's), not an hour later; only
        ever a folder under `uploads/`, and never one a run's config reads."""
        path = Path(folder).resolve()
        if not is_within(path, self.uploads_root) or path == self.uploads_root:
            return False
        top = path.relative_to(self.uploads_root).parts[0]
        if top in self._uploads_in_use():
            return False
        shutil.rmtree(self.uploads_root / top, ignore_errors=True)
        return True

    def _uploads_in_use(self) -> set[str]:
        """Names of the unpacked upload folders that some run's config reads from."""
        used: set[str] = set()
        for run_dir in self._run_dirs():
            config = (self._read_record(run_dir) or {}).get("config") or {}
            for value in config.values():
                if isinstance(value, str) and is_within(Path(value), self.uploads_root):
                    rel = Path(value).relative_to(self.uploads_root)
                    if rel.parts:
                        used.add(rel.parts[0])
        return used

    def prune_uploads(self, grace_s: float = UPLOAD_GRACE_S) -> list[Path]:
        """Delete the unpacked uploads that no run's config reads from and that are older than
        `grace_s` (a fresh one may be about to start a run); return what was deleted. A run that
        used an upload keeps it, so it can still be resumed."""
        if not self.uploads_root.is_dir():
            return []
        used = self._uploads_in_use()
        removed = []
        now = time.time()
        for folder in self.uploads_root.iterdir():
            if not folder.is_dir() or folder.is_symlink() or folder.name in used:
                continue
            if now - folder.stat().st_mtime > grace_s:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        if removed:
            log.info("removed %d unpacked upload(s) no run uses", len(removed))
        return removed

    def checkpoint_roots(self) -> list[Path]:
        roots = [self.runs_root, *self.extra_checkpoints]
        if self.checkpoints_root is not None:
            roots.insert(0, self.checkpoints_root)
        return roots

    # -- checkpoints ---------------------------------------------------------------------------
    def list_checkpoints(self) -> list[tuple[str, str]]:
        """(label, folder) for every loadable checkpoint: the shipped ones, then the runs'
        (newest first). A folder counts once it is complete (`checkpoint.is_complete`)."""
        out: list[tuple[str, str]] = []
        seen: set[str] = set()

        def add(label: str, folder: Path) -> None:
            key = str(folder.resolve())
            if key not in seen and is_complete(folder):
                seen.add(key)
                out.append((label, key))

        for extra in self.extra_checkpoints:
            add(extra.name, extra)
        if self.checkpoints_root is not None and self.checkpoints_root.is_dir():
            if is_complete(self.checkpoints_root):
                add(self.checkpoints_root.name, self.checkpoints_root)
            for sub in sorted(self.checkpoints_root.iterdir()):
                if sub.is_dir():
                    add(sub.name, sub)
        for run_dir in self._run_dirs():
            ckpt = run_dir / CHECKPOINT_SUBDIR
            rec = self._read_record(run_dir)
            state = self._effective_state(rec) if rec else "?"
            add(f"run {run_dir.name} ({state})", ckpt)
        return out

    # -- starting and stopping -----------------------------------------------------------------
    def active_run(self) -> _ActiveRun | None:
        with _ACTIVE_LOCK:
            for key, act in list(_ACTIVE.items()):
                if not act.thread.is_alive():
                    del _ACTIVE[key]
            # One run per server process, whatever runs root it writes to.
            for act in _ACTIVE.values():
                return act
        return None

    def _busy_record(self) -> dict | None:
        """A run on this runs root that another live process records as going."""
        for run_dir in self._run_dirs():
            rec = self._read_record(run_dir)
            if rec and rec.get("state") in ACTIVE_STATES and self._effective_state(rec) in ACTIVE_STATES:
                return rec
        return None

    def ensure_idle(self) -> None:
        """Raise `RunBusyError` (a polite message naming the run) if a run is going."""
        act = self.active_run()
        if act is not None:
            rec = self._read_record(act.run_dir) or {}
            raise RunBusyError(
                f"a fine-tuning run is already going: {act.run_id}, started "
                f"{rec.get('started', '?')}. Only one run at a time on this server; "
                "wait for it to end or stop it."
            )
        other = self._busy_record()
        if other is not None:
            raise RunBusyError(
                f"a fine-tuning run is already going: {other.get('run_id')}, started "
                f"{other.get('started', '?')} (in another server process). "
                "Only one run at a time on this server."
            )

    def check_memory(self, values: dict) -> MemoryEstimate | None:
        """The memory a run with these TrainConfig fields would need (`core.memory`); ValueError,
        with the estimate, when it is above `max_run_memory_bytes`. Needs no data: callers check
        it before unpacking anything. None when no limit is set."""
        if self.max_run_memory_bytes is None:
            return None
        cfg = _default_config({k: v for k, v in values.items() if k != "run_dir"})
        classes = 100  # before the data is read; the classifier is a rounding error beside the activations
        estimate = training_memory(run_model_config(cfg, classes), cfg.batch_size, cfg.num_frames, cfg.height,
                                   cfg.width, cfg.optimizer)
        if estimate.total > self.max_run_memory_bytes:
            raise ValueError(f"this run would need {estimate.describe()}, more than the "
                             f"{self.max_run_memory_bytes / 2**30:.1f} GiB one run may use on this server: "
                             "lower the batch size or the frames per clip")
        return estimate

    def start(self, cfg: Any) -> str:
        """Start a run in the background and return its id; `RunBusyError` if one is going.

        `cfg` is a `TrainConfig` or a mapping of its fields. `run_dir` is set here; the data paths
        must lie under the data roots and `init_checkpoint` must be a listed checkpoint.
        """
        values = _config_to_dict(cfg)
        with self._start_lock:
            self.ensure_idle()
            values = self._confine(values)
            run_id = f"{_dt.datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
            run_dir = self.runs_root / run_id
            run_dir.mkdir(parents=True)
            values["run_dir"] = str(run_dir)
            try:
                train_cfg = self._make_config(values)  # may raise ValueError: nothing started
                self.check_memory(values)
            except BaseException:
                shutil.rmtree(run_dir, ignore_errors=True)
                raise
            record = {
                "run_id": run_id,
                "state": "starting",
                "started": _now_iso(),
                "started_ts": time.time(),
                "ended": None,
                "message": "starting",
                "error": None,
                "pid": os.getpid(),
                "run_dir": str(run_dir),
                "checkpoint_dir": None,
                "config": _public_config(values),
            }
            _write_json_atomic(run_dir / RUN_FILE, record)
            self._launch(run_id, run_dir, train_cfg)
            return run_id

    def resume(self, run_id: str | None = None) -> str:
        """Continue an interrupted, stopped or failed run from its last checkpoint (the trainer's
        `resume`), in the same folder; returns its id. `RunBusyError` if a run is going."""
        with self._start_lock:
            self.ensure_idle()
            if run_id is None:
                dirs = self._run_dirs()
                if not dirs:
                    raise ValueError("there is no run to resume")
                run_dir = dirs[0]
            else:
                if not _SAFE_ID.match(run_id) or not (self.runs_root / run_id / RUN_FILE).is_file():
                    raise ValueError(f"no run '{run_id}'")
                run_dir = self.runs_root / run_id
            rec = self._read_record(run_dir) or {}
            state = self._effective_state(rec)
            if state not in ("interrupted", "stopped", "failed"):
                raise ValueError(f"run {run_dir.name} is {state}: only an interrupted, stopped or "
                                 "failed run can be resumed")
            if not is_complete(run_dir / CHECKPOINT_SUBDIR):
                raise ValueError(f"run {run_dir.name} saved no checkpoint yet: start it again instead")
            values = dict(rec.get("config") or {})
            values = self._confine(values)
            values.update(run_dir=str(run_dir), resume=True)
            train_cfg = self._make_config(values)
            # elapsed counts training time: the time the run stood stopped is not part of it
            before = _elapsed({**rec, "state": state})
            self._update_record(run_dir, state="starting", message="resuming from the last checkpoint",
                                ended=None, error=None, pid=os.getpid(), started_ts=time.time(),
                                elapsed_before_s=float(before or 0.0),
                                resumed=int(rec.get("resumed") or 0) + 1)
            self._launch(run_dir.name, run_dir, train_cfg)
            return run_dir.name

    def _launch(self, run_id: str, run_dir: Path, train_cfg: Any) -> None:
        stop_event = threading.Event()
        act = _ActiveRun(run_id, run_dir, None, stop_event)  # type: ignore[arg-type]
        thread = threading.Thread(
            target=self._run, args=(act, train_cfg), name=f"finetune-{run_id}", daemon=True
        )
        act.thread = thread
        with _ACTIVE_LOCK:
            _ACTIVE[str(run_dir)] = act
        thread.start()
        log.info("fine-tuning run %s started in %s", run_id, run_dir)

    def _confine(self, values: dict) -> dict:
        out = dict(values)
        for key in DATA_PATH_KEYS:
            v = out.get(key)
            if v in (None, ""):
                continue
            try:
                out[key] = str(resolve_data_path(v, self.data_roots))
            except PathNotAllowedError as exc:
                raise PathNotAllowedError(f"{key}: {exc}") from None
        init = out.get("init_checkpoint")
        if init not in (None, ""):
            try:
                out["init_checkpoint"] = str(
                    resolve_data_path(init, self.checkpoint_roots(), kind="dir")
                )
            except PathNotAllowedError as exc:
                raise PathNotAllowedError(f"starting checkpoint: {exc}") from None
        return out

    def _update_record(self, run_dir: Path, *, only_if_active: bool = False, **changes) -> dict:
        """Read-modify-write run.json under a lock (the run's thread and stop() both write).
        `only_if_active`: leave a record that already says finished/stopped/failed alone."""
        with _RECORD_LOCK:
            path = run_dir / RUN_FILE
            rec = self._read_record(run_dir) or {}
            if only_if_active and rec.get("state") not in ACTIVE_STATES:
                return rec
            rec.update(changes)
            _write_json_atomic(path, rec)
            return rec

    def _run(self, act: _ActiveRun, train_cfg: Any) -> None:
        run_dir = act.run_dir

        def callback(event: dict) -> None:
            try:
                ev = dict(event)
                act.events.append(ev)
                kind = ev.get("event")
                first_step = kind == "step" and not act.seen_step
                if kind == "step":
                    act.seen_step = True
                if first_step or kind == "epoch":
                    changes: dict[str, Any] = {"state": "stopping" if act.stop_event.is_set() else "running"}
                    if ev.get("checkpoint_dir"):
                        changes["checkpoint_dir"] = str(ev["checkpoint_dir"])
                    if kind == "epoch":
                        changes["message"] = f"epoch {ev.get('epoch')} done"
                    else:
                        changes["message"] = "training"
                    self._update_record(run_dir, only_if_active=True, **changes)
            except Exception:  # noqa: BLE001 - the run must not die of its bookkeeping
                log.exception("run %s: callback bookkeeping failed", act.run_id)

        try:
            self._update_record(
                run_dir, only_if_active=True, state="running", message="loading data and model"
            )
            result = self._train(train_cfg, callback=callback, stop_event=act.stop_event)
            act.trained = True
            stopped = bool(getattr(result, "stopped", act.stop_event.is_set()))
            error = getattr(result, "error", None)  # the run ended itself (e.g. non-finite loss)
            ckpt = getattr(result, "checkpoint_dir", None)
            if ckpt is None and is_complete(run_dir / CHECKPOINT_SUBDIR):
                ckpt = run_dir / CHECKPOINT_SUBDIR
            if error:
                state, message = "failed", "ended early: " + scrub(str(error))
            elif stopped:
                state, message = "stopped", "stopped on request; checkpoint saved"
            elif act.stop_event.is_set():  # asked to stop after its last step (e.g. during the final validation)
                state, message = "finished", "finished: the stop request came after its last step"
            else:
                state, message = "finished", "finished"
            self._update_record(
                run_dir,
                state=state,
                ended=_now_iso(),
                message=message,
                error=scrub(str(error)) if error else None,
                checkpoint_dir=str(ckpt) if ckpt else None,
            )
            log.info("fine-tuning run %s %s", act.run_id, state)
        except BaseException as exc:  # noqa: BLE001 - recorded, and logged with its traceback
            log.exception("fine-tuning run %s failed", act.run_id)
            msg = scrub(f"{type(exc).__name__}: {exc}")
            try:
                self._update_record(
                    run_dir, state="failed", ended=_now_iso(), message="failed", error=msg
                )
            except Exception:  # noqa: BLE001
                log.exception("run %s: could not record the failure", act.run_id)
        finally:
            with _ACTIVE_LOCK:
                _ACTIVE.pop(str(run_dir), None)

    def stop(self, run_id: str | None = None) -> bool:
        """Ask the running run to end after its current step (it saves a checkpoint).
        True if a run was asked to stop."""
        act = self.active_run()
        if act is None or act.trained or (run_id and act.run_id != run_id):
            return False
        act.stop_event.set()
        try:
            self._update_record(
                act.run_dir, only_if_active=True, state="stopping",
                message="stopping after the current step; a checkpoint is saved",
            )
        except OSError:
            log.exception("run %s: could not record the stop request", act.run_id)
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the active run (tests, CLI). True if none is left going."""
        act = self.active_run()
        if act is None:
            return True
        act.thread.join(timeout)
        return not act.thread.is_alive()

    # -- reading state back --------------------------------------------------------------------
    def _run_dirs(self) -> list[Path]:
        if not self.runs_root.is_dir():
            return []
        dirs = [p for p in self.runs_root.iterdir() if p.is_dir() and (p / RUN_FILE).is_file()]

        def started(p: Path) -> tuple:
            rec = self._read_record(p) or {}
            ts = rec.get("started_ts")
            return (ts if isinstance(ts, (int, float)) else 0.0, p.name)

        return sorted(dirs, key=started, reverse=True)  # newest first

    @staticmethod
    def _read_record(run_dir: Path) -> dict | None:
        try:
            return json.loads((run_dir / RUN_FILE).read_text())
        except (OSError, ValueError):
            return None

    def _effective_state(self, rec: dict) -> str:
        state = rec.get("state", "?")
        if state not in ACTIVE_STATES:
            return state
        with _ACTIVE_LOCK:
            act = _ACTIVE.get(str(rec.get("run_dir")))
        if act is not None and act.thread.is_alive():
            return state
        pid = rec.get("pid")
        if pid != os.getpid() and isinstance(pid, int) and _pid_alive(pid):
            return state  # going in another server process on the same folder
        return "interrupted"

    def list_runs(self) -> list[dict]:
        out = []
        for d in self._run_dirs():
            rec = self._read_record(d)
            if rec:
                rec["state"] = self._effective_state(rec)
                out.append(rec)
        return out

    def public(self, value):
        """A status, config or message as the public may see it: roots as `runs/`, `uploads/`,
        `data/`, `checkpoints/`, never absolute server paths or process ids."""
        roots = [(str(self.uploads_root), "uploads"), (str(self.runs_root), "runs")]
        if self.data_root is not None:
            roots.append((str(self.data_root), "data"))
        if self.checkpoints_root is not None:
            roots.append((str(self.checkpoints_root), "checkpoints"))
        roots += [(str(p.parent), "checkpoints") for p in self.extra_checkpoints]
        roots.sort(key=lambda pair: -len(pair[0]))  # the most specific root first
        return _public(value, roots)

    def public_status(self, run_id: str | None = None) -> dict:
        """`status` for a page or an API caller (see `public`)."""
        return self.public(self.status(run_id))

    def status(self, run_id: str | None = None) -> dict:
        """The state of `run_id`, or of the running run, or of the latest run; with its metrics
        read back from metrics.jsonl. `{"state": "idle"}` when there has been no run."""
        if run_id:
            run_dir = self.runs_root / run_id
            if not _SAFE_ID.match(run_id) or not (run_dir / RUN_FILE).is_file():
                return {"state": "unknown", "run_id": run_id, "message": f"no run '{run_id}'"}
        else:
            act = self.active_run()
            if act is not None:
                run_dir = act.run_dir
            else:
                dirs = self._run_dirs()
                if not dirs:
                    return {"state": "idle", "run_id": None, "message": "no fine-tuning run yet"}
                run_dir = dirs[0]
        rec = self._read_record(run_dir) or {"run_id": run_dir.name}
        rec = dict(rec)
        rec["state"] = self._effective_state(rec)
        if rec["state"] == "interrupted" and rec.get("message") != "interrupted":
            rec["message"] = "interrupted: the server stopped while it ran (resume from its checkpoint)"
        events = self._metrics.read(run_dir / METRICS_FILE)
        if not events:
            with _ACTIVE_LOCK:
                act = _ACTIVE.get(str(run_dir))
                events = list(act.events) if act else []
        steps = [e for e in events if e.get("event") == "step"]
        epochs = [e for e in events if e.get("event") == "epoch"]
        rec["steps"] = steps
        rec["epochs"] = epochs
        rec["last_step"] = steps[-1] if steps else None
        rec["num_classes"] = next((e["num_classes"] for e in reversed(epochs) if e.get("num_classes")), None)
        rec["progress"] = _progress(rec, steps)
        rec["eta_s"] = steps[-1].get("eta_s") if steps and rec["state"] in ACTIVE_STATES else None
        if not rec.get("checkpoint_dir"):
            for e in reversed(events):
                if e.get("checkpoint_dir"):
                    rec["checkpoint_dir"] = str(e["checkpoint_dir"])
                    break
        rec["elapsed_s"] = _elapsed(rec)
        return rec


_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]+$")
_PRIVATE_KEYS = ("pid",)


def _public(value, roots: list[tuple[str, str]]):
    """`value` with the server's roots written as short names and no process ids: what a page or
    an API caller may see."""
    if isinstance(value, dict):
        return {k: _public(v, roots) for k, v in value.items() if k not in _PRIVATE_KEYS}
    if isinstance(value, (list, tuple)):
        return [_public(v, roots) for v in value]
    if isinstance(value, str):
        for prefix, name in roots:
            value = value.replace(prefix, name)
        return portable(value)
    return value


def _progress(rec: dict, steps: list[dict]) -> float:
    if rec.get("state") in ("finished",):
        return 1.0
    if not steps:
        return 0.0
    last = steps[-1]
    epochs = (rec.get("config") or {}).get("epochs") or 0
    spe = last.get("steps_per_epoch") or 0
    try:
        done = (int(last.get("epoch", 1)) - 1) * spe + int(last.get("step", 0))
        total = int(epochs) * spe
        return max(0.0, min(1.0, done / total)) if total > 0 else 0.0
    except (TypeError, ValueError):
        return 0.0


def _elapsed(rec: dict) -> float | None:
    """Seconds the run has been going: this start's (or resume's) time plus the earlier starts'."""
    ts = rec.get("started_ts")
    if not isinstance(ts, (int, float)):
        return None
    before = float(rec.get("elapsed_before_s") or 0.0)
    if rec.get("state") in ACTIVE_STATES:
        return before + time.time() - ts
    try:
        ended = _dt.datetime.fromisoformat(rec["ended"]).timestamp()
        return before + ended - ts
    except (KeyError, TypeError, ValueError):
        return None
