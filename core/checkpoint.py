"""Checkpoints as folders in the Hugging Face Hub repo layout, and nothing ever unpickled freely.

  <folder>/model.safetensors   weights (safetensors: no code can hide in it)
  <folder>/config.json         {"format": "stmanet-checkpoint", "version": 1, "save_id": ...,
                                "model": STMANetConfig dict, "clip": ClipConfig dict,
                                "class_names": [...], "metrics": {...}, "training": {...},
                                "data_source": "..."}
  <folder>/README.md           model card (generated unless one is given)
  <folder>/training_state.pt   resume state only (optimizer, scheduler, RNG, ...); never pushed

Atomic writes: every file is written to `<name>.tmp-<random>` beside its final name and moved
over it with `os.replace`, so a final name only ever holds a complete file, and a writer killed
at any moment leaves at worst a stray `*.tmp-*` file. Files are replaced weights first and
config.json last: a folder whose config.json exists is complete. Both config.json and the
safetensors header carry the same random `save_id`; if a writer dies between replacing the
weights and replacing config.json, loading sees two different ids and refuses the folder
instead of pairing new weights with old metadata. `save_checkpoint` does not swap whole folders
(that would drop `training_state.pt` and any file a person put there); a training run, whose
weights and resume state must change together, writes a whole folder beside the old one and
swaps it in with two renames (`swap_in_checkpoint`; `recover_checkpoint_swap` repairs a swap a
kill interrupted).

Pickles: a `.pt/.bin/.pth` given as the weights is read only with `torch.load(weights_only=True)`,
which refuses any global other than tensors and plain containers; the refusal is reported as a
`CheckpointError` and nothing in the file runs.

Why this module is long (~650 lines): it is the one owner of the checkpoint layout - writing,
reading, validating (no pickles), the model card, the familiarity reference and the Hub
upload/download of the same files - and splitting those would spread the layout again.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from huggingface_hub import HfApi, snapshot_download
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .data.clips import ClipConfig
from .model import STMANet, STMANetConfig, build_model
from .model.backbone import kaiming_init
from .model.inputs import describe_input
from .tokens import scrub

log = logging.getLogger(__name__)

FORMAT = "stmanet-checkpoint"
VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"
TRAINING_STATE = "training_state.pt"
HUB_PATTERNS = ["*.safetensors", CONFIG, CARD]  # what we download: never a pickle
FAMILIARITY = "familiarity.safetensors"  # optional: training-video features for core.familiarity
PUSH_IGNORE = [TRAINING_STATE, "*.tmp-*", ".*", "*.pt", "*.bin", "*.pth"]
PICKLE_SUFFIXES = (".pt", ".bin", ".pth")
PICKLE_NAMES = ("pytorch_model.bin", "model.pt", "model.pth")  # accepted in a folder without safetensors
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
# numpy RNG states in training_state.pt need these, and nothing else outside torch's allowlist.
_NUMPY_GLOBALS = [
    np._core.multiarray._reconstruct if hasattr(np, "_core") else np.core.multiarray._reconstruct,
    np.ndarray,
    np.dtype,
] + sorted({type(np.dtype(t)) for t in ("u1", "u4", "u8", "i4", "i8", "f4", "f8", "bool")}, key=str)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked; the message says what is wrong and where."""


@dataclass
class LoadedCheckpoint:
    model: STMANet  # in eval mode, on the requested device
    model_cfg: STMANetConfig
    clip_cfg: ClipConfig
    class_names: list[str]
    meta: dict  # the whole config.json (metrics, training, data_source, ...)
    path: Path  # local folder the checkpoint was read from (the Hub cache for a repo id)


# ----------------------------------------------------------------------------- writing


def _atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    """Write through a temp file beside `target` then `os.replace`: the final name never holds
    a partial file, whatever happens to the writer."""
    tmp = target.with_name(f"{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())  # the bytes are on disk before the name points at them
        # Some writers create 0600 files; keep the old file's mode, or the usual 0644.
        os.chmod(tmp, target.stat().st_mode & 0o777 if target.exists() else 0o644)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_text(target: Path, text: str) -> None:
    _atomic_write(target, lambda p: p.write_text(text, encoding="utf-8"))


def _json_default(value):
    """Metrics and recipes often hold numpy scalars, tensors, paths or dataclasses."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def portable(value):
    """`value` with every absolute path written relative to the working directory when it lies
    inside it, else as its last component: config.json and the card are what a Hub push
    publishes, and a server's folder layout is not for the public (nor useful elsewhere)."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v) for v in value]
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str) and os.path.isabs(value) and "\n" not in value:
        rel = os.path.relpath(value, os.getcwd())
        return rel if not rel.startswith("..") else Path(value).name
    return value


def save_checkpoint(
    folder,
    model: STMANet,
    clip_cfg: ClipConfig,
    class_names: Sequence[str],
    metrics: dict | None = None,
    training: dict | None = None,
    data_source: str | None = None,
    card: str | None = None,
) -> Path:
    """Write `model` as a Hub-layout checkpoint folder (created if needed); returns the folder.

    `card` is the README.md text; None writes a generated model card. Existing files in the
    folder other than these three (e.g. training_state.pt) are left alone.
    """
    folder = Path(folder)
    cfg: STMANetConfig = model.cfg
    class_names = [str(name) for name in class_names]
    if len(class_names) != cfg.num_classes:
        raise CheckpointError(
            f"{len(class_names)} class names given for a model with {cfg.num_classes} outputs"
        )
    save_id = uuid.uuid4().hex
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "save_id": save_id,
        "model": cfg.to_dict(),
        "clip": clip_cfg.to_dict(),
        "class_names": class_names,
        "metrics": metrics or {},
        "training": portable(training or {}),
        "data_source": portable(data_source),
    }
    try:  # fail on unserialisable metadata before touching any file
        config_text = json.dumps(meta, indent=2, default=_json_default)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint metadata is not JSON-serialisable: {error}") from error
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    header = {"format": FORMAT, "save_id": save_id}
    _atomic_write(folder / WEIGHTS, lambda p: save_file(tensors, str(p), metadata=header))
    _write_text(folder / CARD, card if card is not None else model_card(json.loads(config_text)))
    _write_text(folder / CONFIG, config_text)  # last: its presence marks a complete folder
    log.info("saved checkpoint to %s", folder)
    return folder


def save_familiarity(folder, reference: np.ndarray, threshold: float, calibration: dict) -> Path:
    """Write the familiarity reference (N, D unit features of the training videos) and its
    threshold beside the weights, tied to this save of them: a later save makes it stale and
    `load_familiarity` then ignores it."""
    folder = Path(folder)
    meta = read_meta(folder)
    header = {"format": FORMAT, "save_id": str(meta.get("save_id")), "threshold": repr(float(threshold)),
              "calibration": json.dumps(portable(calibration), default=_json_default)}
    tensor = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float32))
    _atomic_write(folder / FAMILIARITY, lambda p: save_file({"reference": tensor}, str(p), metadata=header))
    return folder / FAMILIARITY


def load_familiarity(folder) -> tuple[np.ndarray, float, dict] | None:
    """(reference, threshold, calibration) saved with these weights, or None (absent, or stale)."""
    folder = Path(folder)
    path = folder / FAMILIARITY
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
        reference = f.get_tensor("reference").numpy()
    if header.get("save_id") != str(read_meta(folder).get("save_id")):
        log.warning("%s belongs to an earlier save of these weights: ignored", path)
        return None
    return reference, float(header["threshold"]), json.loads(header.get("calibration") or "{}")


def _staging(folder: Path) -> tuple[Path, Path]:
    return folder.with_name(folder.name + ".new"), folder.with_name(folder.name + ".old")


def swap_in_checkpoint(folder: Path, write: Callable[[Path], None]) -> None:
    """Write a whole checkpoint into `<folder>.new` with `write`, then swap it in by two renames.

    In-place saves pair new weights with an old resume state (or refuse the folder) when a kill
    lands between two files; a folder swap never does. The moment between the renames (no
    `folder`, both others complete) is repaired by `recover_checkpoint_swap`."""
    staging, old = _staging(folder)
    shutil.rmtree(staging, ignore_errors=True)
    write(staging)
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.rename(folder, old)
    os.rename(staging, folder)
    shutil.rmtree(old, ignore_errors=True)


def recover_checkpoint_swap(folder: Path) -> None:
    """Finish a swap a kill interrupted, and drop half-written staging folders.

    `folder` is missing only between the two renames, when `.new` is complete (config.json is
    written last) and `.old` is the previous complete checkpoint: the newer wins."""
    staging, old = _staging(folder)
    if not folder.exists():
        for candidate in (staging, old):
            if (candidate / CONFIG).is_file():
                os.rename(candidate, folder)
                log.warning("restored %s from %s (a save was interrupted)", folder, candidate.name)
                break
    for leftover in (staging, old):
        shutil.rmtree(leftover, ignore_errors=True)


def save_training_state(folder, state: dict) -> Path:
    """Write the resume state (optimizer/scheduler/scaler state dicts, epoch, global step, RNG
    states) to `<folder>/training_state.pt`. Only tensors, numbers, strings, containers and
    numpy arrays are allowed, so that `load_training_state` can read it with weights_only=True:
    anything else is refused here, at save time, rather than at resume time."""
    target = Path(folder) / TRAINING_STATE
    target.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        torch.save(state, tmp)
        allowed = {f"{g.__module__}.{g.__qualname__}" for g in _NUMPY_GLOBALS}
        unsafe = sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(str(tmp))) - allowed)
        if unsafe:
            raise CheckpointError(
                f"training state holds objects that cannot be loaded safely: {', '.join(unsafe)}; "
                "store state_dict()s, numbers, strings, tensors or numpy arrays instead"
            )

    _atomic_write(target, write)
    return target


def load_training_state(folder, map_location="cpu") -> dict:
    """Read `<folder>/training_state.pt` with weights_only=True (numpy arrays allowed)."""
    path = Path(folder)
    if path.is_dir():
        path = path / TRAINING_STATE
    if not path.is_file():
        raise CheckpointError(f"no training state to resume from: {path} does not exist")
    try:
        with torch.serialization.safe_globals(_NUMPY_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"refusing to load {path}: {_pickle_problem(error)}") from None
    except (RuntimeError, EOFError, OSError) as error:
        raise CheckpointError(f"cannot read training state {path}: {error}") from error


def model_card(meta: dict) -> str:
    """A README.md for the Hub: what the model is, its classes, figures, recipe and data."""
    m, c = meta["model"], meta["clip"]
    names = meta["class_names"]
    variant = "ST-MANet" if m.get("use_tda") and m.get("use_sda") else "3D ResNet variant of ST-MANet"
    lines = [
        "---",
        "library_name: pytorch",
        "pipeline_tag: video-classification",
        "tags: [video-classification, action-recognition, st-manet, 3d-resnet]",
        "---",
        f"# {variant} (3D ResNet-{m.get('depth')}, {len(names)} classes)",
        "",
        "Video action recognition with spatio-temporal multi-level aggregation (ST-MANet):",
        "a 3D ResNet with temporal (TDA) and spatial (SDA) attention at stages 2-5 and multi-level",
        "fusion of the pooled stages. Weights are in `model.safetensors`; `config.json` holds the",
        "model and clip configuration and the class names.",
        "",
        "## Input",
        describe_clip_input(m, c),
        "",
        f"## Classes ({len(names)})",
        ", ".join(names),
        "",
    ]
    metrics = dict(meta.get("metrics") or {})
    quality = metrics.pop("attention_quality", None)
    for title, values in (("Metrics", metrics), ("Training", meta.get("training"))):
        if values:
            lines += [f"## {title}"] + [f"- {k}: {_card_value(v)}" for k, v in values.items()] + [""]
    if quality:
        lines += _quality_table(quality)
    lines += ["## Data", meta.get("data_source") or "not recorded", ""]
    lines += [
        "## Use",
        "```python",
        "from core.predict import Predictor",
        "prediction = Predictor('<this repo id or folder>').predict('video.mp4')",
        "print(prediction.topk)",
        "```",
        "",
        "Model configuration: `" + json.dumps(m) + "`",
        "",
    ]
    return "\n".join(lines)


def describe_clip_input(m: dict, c: dict) -> str:
    """What a model card says the model reads: frames, crop and the stem's input, from the
    checkpoint's model (m) and clip (c) configs as saved."""
    clips = c.get("max_windows")
    if c.get("sampling") in ("segments", "segment_pairs"):
        segments = c.get("num_frames", 0) // (2 if c.get("sampling") == "segment_pairs" else 1)
        each = "one frame" if c.get("sampling") == "segments" else "two consecutive frames"
        frames = (f"{c.get('num_frames')} frames, {each} from each of {segments} equal time segments of the whole "
                  f"video (segment sampling); a video's score is the mean softmax over {clips or 1} clip(s) at "
                  "different phases")
    else:
        frames = (f"{c.get('num_frames')} frames sampled every {c.get('stride')} frame(s); a video's score is the "
                  "mean softmax over its consecutive windows" + (f" (at most {clips}, evenly spaced)" if clips else ""))
    seen = describe_input(m.get("input_mode", "rgb"), m.get("input_clip_norm", False))
    crop = "a square around what moves (motion crop), then the centre crop" if c.get("motion_crop") else "centre crop"
    return f"{frames}; {c.get('height')}x{c.get('width')} pixels, {crop}; the stem sees {seen}."


def _quality_table(quality: dict) -> list[str]:
    """Attention quality per stage (core.attention_quality) as a markdown table."""
    lines = ["## Attention quality (held-out videos)",
             "Input dependence 0 means the same map for every video; concentration is the share of cells "
             "effectively attended (1/cells: one-hot); on-motion lift > 1 means attention on what moves.", "",
             "| attention | stage | input dependence | concentration | on-motion lift | verdict |",
             "|---|---|---|---|---|---|"]
    for kind, rows in quality.items():
        for stage, row in rows.items():
            values = ["-" if row.get(k) is None else f"{row[k]:.2f}"
                      for k in ("input_dependence", "concentration", "motion_lift")]
            lines.append(f"| {kind} | {stage} | " + " | ".join(values) + f" | {row.get('degenerate') or 'ok'} |")
    return lines + [""]


def _card_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


# ----------------------------------------------------------------------------- reading


def load_checkpoint(
    path_or_repo_id,
    device="cpu",
    expected_classes: Sequence[str] | int | None = None,
    expected_model: STMANetConfig | dict | None = None,
    revision: str | None = None,
    token: str | None = None,
) -> LoadedCheckpoint:
    """Load a checkpoint folder, a weights file inside one, or a Hub repo id ("user/name", used
    only when the string is not an existing local path). The model is returned in eval mode.

    expected_classes (names or a count) and expected_model are checked before any weight is
    read, so a wrong checkpoint fails fast with the mismatch spelled out. revision and token
    (for a private repo) are used only for a Hub download.
    """
    source = resolve_checkpoint(path_or_repo_id, revision=revision, token=token)
    weights_path, folder = _locate_files(source)
    meta = read_meta(folder)
    model_cfg, clip_cfg, class_names = _parse_meta(meta, folder)
    check_classes(class_names, expected_classes)
    check_model_config(model_cfg, expected_model)
    state = _read_weights(weights_path, meta)
    model = build_model(model_cfg)
    problem = state_mismatch(model.state_dict(), state)
    if problem:
        raise CheckpointError(f"{weights_path}: {problem}")
    model.load_state_dict(state)
    model.to(device).eval()
    return LoadedCheckpoint(model, model_cfg, clip_cfg, class_names, meta, folder)


def resolve_checkpoint(path_or_repo_id, revision: str | None = None, token: str | None = None) -> Path:
    """A local path as is; otherwise a Hub repo id, downloaded (weights, config, card only)."""
    path = Path(path_or_repo_id).expanduser()
    if path.exists():
        return path
    text = str(path_or_repo_id)
    if not _REPO_ID.fullmatch(text):
        raise CheckpointError(
            f"no checkpoint at {text!r}: not an existing folder or file, and not a Hub repo id like 'user/name'"
        )
    return download_checkpoint(text, revision=revision, token=token)


def download_checkpoint(repo_id: str, revision: str | None = None, token: str | None = None) -> Path:
    """Download a checkpoint from the Hub into the local cache; pickles are never fetched."""
    log.info("downloading checkpoint %s from the Hugging Face Hub", repo_id)
    try:
        local = snapshot_download(repo_id, revision=revision, allow_patterns=HUB_PATTERNS, token=token)
    except Exception as error:  # offline, not found, gated, network...
        message = scrub(f"{type(error).__name__}: {error}", token)
        raise CheckpointError(
            f"{repo_id!r} is not a local folder, and downloading it from the Hugging Face Hub failed: {message}"
        ) from None
    return Path(local)


def _locate_files(source: Path) -> tuple[Path, Path]:
    """(weights file, checkpoint folder) for a folder or a file given as the checkpoint."""
    if source.is_dir():
        folder = source
        weights = folder / WEIGHTS
        if not weights.is_file():
            weights = next((folder / n for n in PICKLE_NAMES if (folder / n).is_file()), folder / WEIGHTS)
        missing = [p.name for p in (folder / CONFIG, weights) if not p.is_file()]
        if missing:
            leftovers = sorted(p.name for p in folder.glob("*.tmp-*"))
            hint = f"; an interrupted save left {', '.join(leftovers)}" if leftovers else ""
            raise CheckpointError(
                f"checkpoint folder {folder} is incomplete: missing {', '.join(missing)} "
                f"(expected {WEIGHTS} + {CONFIG}){hint}"
            )
        return weights, folder
    if source.name == CONFIG:
        return _locate_files(source.parent)
    if source.suffix in (".safetensors",) + PICKLE_SUFFIXES:
        if not (source.parent / CONFIG).is_file():
            raise CheckpointError(
                f"{source.name} has no {CONFIG} beside it in {source.parent}: the config (model, clip, "
                "class names) is needed to build the model"
            )
        return source, source.parent
    raise CheckpointError(
        f"unsupported checkpoint file {source}: give a checkpoint folder, a .safetensors file, or a .pt/.bin/.pth state dict"
    )


def is_complete(folder: str | Path) -> bool:
    """Whether `folder` holds a whole checkpoint: weights and config (written last, so its
    presence marks a save that finished)."""
    folder = Path(folder)
    return (folder / CONFIG).is_file() and (folder / WEIGHTS).is_file()


def unusable_reason(folder: str | Path) -> str | None:
    """Why `folder` cannot be loaded as a checkpoint, in words, or None when it is complete."""
    folder = Path(folder)
    if not folder.is_dir():
        return "the folder does not exist"
    if not (folder / CONFIG).is_file():
        return f"it has no {CONFIG}"
    if not (folder / WEIGHTS).is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in (".pt", ".pth", ".bin", ".ckpt"))
        return f"it has no {WEIGHTS}" + (
            f" ({', '.join(pickles)} is a pickle, which is never loaded here: it can run code; convert it "
            "to safetensors)" if pickles else "")
    return None


def saved_stamp(folder: str | Path) -> tuple:
    """Changes whenever the checkpoint in `folder` is saved again (its config is written last):
    (mtime_ns, size) of the config, or (None, None) without one."""
    try:
        st = (Path(folder) / CONFIG).stat()
        return st.st_mtime_ns, st.st_size
    except OSError:
        return None, None


def read_meta(folder: Path) -> dict:
    path = Path(folder) / CONFIG
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint folder {folder} is incomplete: missing {CONFIG}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{path} is not an ST-MANet checkpoint config (format {found!r}, expected {FORMAT!r})")
    if not isinstance(meta.get("version"), int) or meta["version"] > VERSION:
        raise CheckpointError(
            f"{path} has format version {meta.get('version')!r}; this code reads versions up to {VERSION}"
        )
    return meta


def _parse_meta(meta: dict, folder: Path) -> tuple[STMANetConfig, ClipConfig, list[str]]:
    where = Path(folder) / CONFIG
    missing = [k for k in ("model", "clip", "class_names") if k not in meta]
    if missing:
        raise CheckpointError(f"{where} lacks {', '.join(missing)}")
    try:
        model_cfg = STMANetConfig.from_dict(meta["model"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{where}: bad model config: {error}") from None
    try:
        clip_cfg = ClipConfig.from_dict(meta["clip"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{where}: bad clip config: {error}") from None
    names = meta["class_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{where}: class_names must be a list of strings")
    if len(names) != model_cfg.num_classes:
        raise CheckpointError(
            f"{where} lists {len(names)} class names but its model has {model_cfg.num_classes} outputs"
        )
    return model_cfg, clip_cfg, list(names)


def _read_weights(path: Path, meta: dict) -> dict[str, torch.Tensor]:
    if path.suffix in PICKLE_SUFFIXES:
        return _read_pickled_weights(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        state = load_file(str(path))
    except Exception as error:  # SafetensorError for truncated or corrupt files
        raise CheckpointError(f"cannot read weights {path}: corrupt or truncated file ({error})") from None
    saved, expected = header.get("save_id"), meta.get("save_id")
    if saved and expected and saved != expected:
        raise CheckpointError(
            f"{path.parent}: {WEIGHTS} and {CONFIG} come from different saves "
            "(a save was interrupted between the two files); save the checkpoint again"
        )
    return state


def _read_pickled_weights(path: Path) -> dict[str, torch.Tensor]:
    """A .pt/.bin/.pth state dict, read with weights_only=True: nothing in it can run."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"refusing to load {path}: {_pickle_problem(error)}") from None
    except (RuntimeError, EOFError, OSError) as error:
        raise CheckpointError(f"cannot read weights {path}: {error}") from None
    for key in ("state_dict", "model"):  # common wrappers around a state dict
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return state


def _pickle_problem(error: Exception) -> str:
    """Name what the pickle tried to import, without relaying torch's advice to turn the check off."""
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    what = f"it would import {found.group(1)}" if found else "it holds objects other than tensors"
    return (
        f"pickled file with code or arbitrary objects ({what}); only safetensors and plain "
        "tensor state dicts are loaded (weights_only=True)"
    )


# ----------------------------------------------------------------------------- checks


def _preview(names: Sequence[str], k: int = 4) -> str:
    names = list(names)
    return ", ".join(names[:k]) + (", ..." if len(names) > k else "")


def check_classes(class_names: Sequence[str], expected: Sequence[str] | int | None) -> None:
    """Raise a CheckpointError naming the difference between the checkpoint's and the expected classes."""
    if expected is None:
        return
    names = None if isinstance(expected, int) else [str(n) for n in expected]
    count = expected if names is None else len(names)
    if len(class_names) != count:
        wanted = f" ({_preview(names)})" if names else ""
        raise CheckpointError(
            f"checkpoint has {len(class_names)} classes ({_preview(class_names)}) but {count} were expected{wanted}"
        )
    if names is None or names == list(class_names):
        return
    if set(names) == set(class_names):
        index = next(i for i, (a, b) in enumerate(zip(class_names, names)) if a != b)
        raise CheckpointError(
            f"checkpoint has the expected classes in another order: position {index} is "
            f"{class_names[index]!r}, expected {names[index]!r}"
        )
    extra, absent = sorted(set(class_names) - set(names)), sorted(set(names) - set(class_names))
    raise CheckpointError(
        f"checkpoint classes differ from the expected ones: not expected {_preview(extra)}; missing {_preview(absent)}"
    )


def check_model_config(cfg: STMANetConfig, expected: STMANetConfig | dict | None) -> None:
    if expected is None:
        return
    want = expected.to_dict() if isinstance(expected, STMANetConfig) else dict(expected)
    have = cfg.to_dict()
    diffs = [f"{k} {have.get(k)!r} vs {want[k]!r}" for k in want if have.get(k) != want[k]]
    if diffs:
        raise CheckpointError("checkpoint model config differs from the expected one (checkpoint vs expected): " + ", ".join(diffs))


def state_mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], k: int = 5) -> str | None:
    """None when `found` fits a model whose state dict is `expected`; otherwise one message that
    names missing keys, unexpected keys and shape mismatches (checkpoint vs config)."""
    missing = [n for n in expected if n not in found]
    unexpected = [n for n in found if n not in expected]
    shapes = [
        f"{n}: {tuple(found[n].shape)} vs {tuple(expected[n].shape)}"
        for n in expected
        if n in found and tuple(found[n].shape) != tuple(expected[n].shape)
    ]
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch for", shapes)):
        if items:
            more = f" (and {len(items) - k} more)" if len(items) > k else ""
            parts.append(f"{label} {', '.join(items[:k])}{more}")
    if not parts:
        return None
    return "weights do not match config (checkpoint vs config): " + "; ".join(parts)


# ----------------------------------------------------------------------------- fine-tuning


def replace_classifier(model: STMANet, num_classes: int) -> STMANet:
    """New classifier and stage heads for a new class list, for fine-tuning a checkpoint on
    other classes: backbone and attention modules keep their weights. The model is changed in
    place and returned; `model.cfg` is the new config (save it with the new class names)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    ref = model.classifier.weight
    model.classifier = nn.Linear(model.classifier.in_features, num_classes)  # (K_new, D)
    kaiming_init(model.classifier)
    if model.stage_heads is not None:
        model.stage_heads = nn.ModuleList(nn.Linear(h.in_features, num_classes) for h in model.stage_heads)
        kaiming_init(model.stage_heads)
    model.to(device=ref.device, dtype=ref.dtype)
    model.cfg = model.cfg.replace(num_classes=num_classes)
    return model


# ----------------------------------------------------------------------------- Hub upload


def push_to_hub(
    folder,
    repo_id: str,
    token: str | None,
    private: bool = False,
    api: HfApi | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload a checkpoint folder (weights, config, card; never training_state.pt or other
    pickles) to a Hub model repo, creating it if needed. Returns the repo URL.

    The token goes only to `HfApi(token=...)`: it is never logged, printed, or written.
    """
    folder = Path(folder)
    _locate_files(folder)  # refuse an incomplete folder before creating anything remotely
    if not (folder / WEIGHTS).is_file():
        raise CheckpointError(f"{folder} has no {WEIGHTS}: only safetensors weights are pushed")
    read_meta(folder)
    api = api if api is not None else HfApi(token=token)
    log.info("pushing checkpoint %s to the Hub repo %s (private=%s)", folder, repo_id, private)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            repo_type="model",
            ignore_patterns=PUSH_IGNORE,
            commit_message=commit_message or "Upload ST-MANet checkpoint",
        )
    except Exception as error:
        message = scrub(f"{type(error).__name__}: {error}", token)
        raise CheckpointError(f"pushing {folder} to the Hub repo {repo_id!r} failed: {message}") from None
    return f"https://huggingface.co/{repo_id}"
