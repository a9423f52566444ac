"""What every dataset reader returns: a list of (video path, label) and the class names.

Readers never crash on a bad entry (an unknown class, a duplicate line, a missing file): they
skip it and say so in `VideoList.problems`, one line per entry naming the path and the reason,
so a 13 000-line split file with three bad lines still gives a usable dataset and a report.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# Extensions the folder readers pick up (lower case, with the dot).
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".gif", ".mpg", ".mpeg", ".m4v", ".wmv", ".flv", ".3gp", ".ogv")


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass
class VideoList:
    samples: list[Sample]
    class_names: list[str]
    problems: list[str] = field(default_factory=list)  # "<path>: <reason>" for each skipped entry

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    def class_counts(self) -> dict[str, int]:
        """Samples per class name, every class listed (0 for a class with no samples)."""
        counts = Counter(self.labels)
        return {name: counts.get(i, 0) for i, name in enumerate(self.class_names)}


def is_video_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")


class ListBuilder:
    """Collects samples for one split, skipping and reporting duplicates and missing files."""

    def __init__(self, class_names: list[str], check_files: bool = True) -> None:
        self.class_names = class_names
        self.check_files = check_files
        self.samples: list[Sample] = []
        self.problems: list[str] = []
        self._seen: set[Path] = set()

    def add(self, path: Path, label: int, where: str = "") -> None:
        where = f" ({where})" if where else ""
        if not 0 <= label < len(self.class_names):
            self.problems.append(f"{path}: label {label} out of range 0..{len(self.class_names) - 1}{where}")
        elif path in self._seen:
            self.problems.append(f"{path}: duplicate entry, kept the first{where}")
        elif self.check_files and not path.is_file():
            self.problems.append(f"{path}: file not found{where}")
        else:
            self._seen.add(path)
            self.samples.append(Sample(path, label))

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def build(self, extra_problems: list[str] | None = None) -> VideoList:
        return VideoList(self.samples, list(self.class_names), [*(extra_problems or []), *self.problems])


@dataclass
class ScanReport:
    """Start-up check of a VideoList: which videos open and decode, which do not and why."""

    ok: list[Sample] = field(default_factory=list)
    bad: list[tuple[Path, str]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{len(self.ok)} readable, {len(self.bad)} unreadable"]
        lines += [f"  {path}: {reason}" for path, reason in self.bad]
        return "\n".join(lines)
