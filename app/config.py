"""The app's settings: folders and limits, from environment variables (or `app.py` arguments).

| variable                    | default                                  | what                                   |
|-----------------------------|------------------------------------------|----------------------------------------|
| STMANET_CHECKPOINT          | checkpoints/stmanet-r18-gestures         | the checkpoint the app starts on       |
| STMANET_CHECKPOINTS_DIR     | <repo>/checkpoints                       | shipped checkpoints for the picker     |
| STMANET_RUNS_DIR            | <repo>/runs                              | fine-tuning runs and unpacked uploads  |
| STMANET_DATA_ROOT           | <repo>/data, else ../shared/data, else - | server folders fine-tuning may read    |
| STMANET_EXAMPLES_DIR        | <repo>/examples, else ../shared/data/clips | example videos                       |
| STMANET_MAX_UPLOAD_MB       | 200                                      | largest video upload                   |
| STMANET_MAX_ZIP_MB          | 1000                                     | largest dataset zip upload             |
| STMANET_MAX_UPLOADS_MB      | 8000                                     | total size of unpacked uploads (runs/uploads/) |
| STMANET_MAX_RUN_MEMORY_MB   | half of this machine's memory            | largest memory estimate a fine-tuning run may have (core/memory.py) |
| STMANET_MAX_VIDEO_MINUTES   | 30                                       | longest video accepted (from metadata) |
| STMANET_DECODE_SECONDS      | 60                                       | decoded length cap per video           |
| STMANET_PREDICT_CONCURRENCY | 2                                        | predictions computed at once           |
| STMANET_DEVICE              | auto (CUDA, then Apple MPS, then CPU)    | where predictions run                  |
| STMANET_THREADS             | CPUs / STMANET_PREDICT_CONCURRENCY       | intra-op threads per prediction ("auto": torch's) |
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from core.preview import PLAYABLE_CONTAINERS

REPO = Path(__file__).resolve().parents[1]


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def _half_of_memory_mb() -> float:
    """Half of this machine's physical memory in MB (8000 where it cannot be read): the server
    process keeps serving predictions while a run trains."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 / 1e6
    except (ValueError, OSError, AttributeError):
        return 8000.0


def _usable_cpus() -> int:
    """CPUs this process may run on (a container's or taskset's limit, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on macOS / Windows
        return os.cpu_count() or 1


def _env_threads(name: str, default: int | None) -> int | None:
    """A thread count: a positive integer, or "auto" (torch's own setting, None)."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("auto", "0"):
        return None
    try:
        return max(1, int(value))
    except ValueError:
        return default


# The shipped ST-MANet; the plain baseline beside it sorts first, so name the default.
DEFAULT_CHECKPOINT = "stmanet-r18-gestures"


def _first_dir(*candidates: Path | None) -> Path | None:
    for c in candidates:
        if c is not None and c.is_dir():
            return c
    return None


@dataclass
class AppConfig:
    checkpoint: Path | None = None  # the checkpoint selected at start (None: first one found)
    checkpoints_dir: Path = REPO / "checkpoints"
    runs_dir: Path = REPO / "runs"
    data_root: Path | None = None
    examples_dir: Path | None = None
    max_upload_mb: float = 200.0
    max_zip_mb: float = 1000.0
    max_uploads_mb: float = 8000.0  # everything unpacked under runs/uploads/ together
    # a fine-tuning run whose memory estimate (core.memory) is larger is refused before it starts
    max_run_memory_mb: float = 8000.0
    max_video_minutes: float = 30.0
    decode_seconds: float = 60.0
    predict_concurrency: int = 2
    # Intra-op threads per prediction. from_env splits the CPUs between the `predict_concurrency`
    # requests that run at once (1 each on a 2-core machine): more threads than cores makes
    # OpenMP threads wait for descheduled siblings at every layer, 2-4x slower on shared vCPUs
    # (bench/README.md). None: torch's default.
    predict_threads: int | None = 1
    extra_checkpoints: list[Path] = field(default_factory=list)

    @classmethod
    def from_env(cls, **overrides) -> "AppConfig":
        cfg = cls(
            checkpoint=_env_path("STMANET_CHECKPOINT") or _first_dir(REPO / "checkpoints" / DEFAULT_CHECKPOINT),
            checkpoints_dir=_env_path("STMANET_CHECKPOINTS_DIR") or REPO / "checkpoints",
            runs_dir=_env_path("STMANET_RUNS_DIR") or REPO / "runs",
            data_root=_env_path("STMANET_DATA_ROOT")
            or _first_dir(REPO / "data", REPO.parent / "shared" / "data"),
            examples_dir=_env_path("STMANET_EXAMPLES_DIR")
            or _first_dir(REPO / "examples", REPO.parent / "shared" / "data" / "clips"),
            max_upload_mb=_env_float("STMANET_MAX_UPLOAD_MB", 200),
            max_zip_mb=_env_float("STMANET_MAX_ZIP_MB", 1000),
            max_uploads_mb=_env_float("STMANET_MAX_UPLOADS_MB", 8000),
            max_run_memory_mb=_env_float("STMANET_MAX_RUN_MEMORY_MB", _half_of_memory_mb()),
            max_video_minutes=_env_float("STMANET_MAX_VIDEO_MINUTES", 30),
            decode_seconds=_env_float("STMANET_DECODE_SECONDS", 60),
            predict_concurrency=max(1, int(_env_float("STMANET_PREDICT_CONCURRENCY", 2))),
        )
        for key, value in overrides.items():
            if value is not None:
                setattr(cfg, key, Path(value) if key.endswith(("_dir", "_root")) or key == "checkpoint" else value)
        if overrides.get("predict_threads") is None:
            cfg.predict_threads = _env_threads("STMANET_THREADS", max(1, _usable_cpus() // cfg.predict_concurrency))
        return cfg

    @property
    def max_file_size(self) -> int:
        """Upper bound for any upload (gradio's `max_file_size`), in bytes."""
        return int(max(self.max_upload_mb, self.max_zip_mb) * 1024 * 1024)

    def example_videos(self, limit: int = 8) -> list[str]:
        if self.examples_dir is None or not self.examples_dir.is_dir():
            return []
        vids = sorted(
            p for p in self.examples_dir.rglob("*")
            # examples are offered in containers the browser plays (core.preview); uploads of others get a preview
            if p.is_file() and p.suffix.lower() in PLAYABLE_CONTAINERS and not p.name.startswith(".")
        )
        return [str(p) for p in vids[:limit]]
