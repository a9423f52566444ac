"""Plain list files: one video per line, `<path relative to root> <class name or index>`.

The format every other layout can be written to (gestures.py writes it), and what a user with
their own data writes by hand. Paths may contain spaces, so each line splits on its LAST run of
whitespace; blank lines and lines starting with '#' are skipped.

Labels: with a class_list file (one class name per line, line order = index) a label may be a
name from it or an integer index into it. Without one, names become the sorted unique labels
of the file, or, if every label is an integer, the indices themselves ("0", "1", ...).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

from .samples import ListBuilder, Sample, VideoList


def read_class_list(path: str | Path) -> list[str]:
    """One class name per line (blank lines ignored), in index order."""
    names = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{path}: duplicate class names {dupes}")
    return names


def _parse_lines(list_path: Path) -> tuple[list[tuple[int, str, str]], list[str]]:
    """(line number, path text, label text) per entry, plus problems for lines without a label."""
    entries, problems = [], []
    for n, raw in enumerate(list_path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            problems.append(f"{list_path}:{n}: no label after the path in {line!r}")
            continue
        entries.append((n, parts[0], parts[1]))
    return entries, problems


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def read_list_file(
    list_path: str | Path, root: str | Path | None = None, class_list: str | Path | None = None, check_files: bool = True
) -> VideoList:
    """Read a list file; root defaults to the list file's folder. Bad lines land in .problems."""
    list_path = Path(list_path)
    root = Path(root) if root is not None else list_path.parent
    entries, problems = _parse_lines(list_path)
    labels = [lab for _, _, lab in entries]
    if class_list is not None:
        names = read_class_list(class_list)
    elif labels and all(_is_int(lab) for lab in labels):
        names = [str(i) for i in range(max(0, max(int(lab) for lab in labels) + 1))]
    else:
        names = sorted(set(labels))
    index = {name: i for i, name in enumerate(names)}
    builder = ListBuilder(names, check_files)
    for n, rel, lab in entries:
        path = root / rel
        if lab in index:
            builder.add(path, index[lab], f"{list_path.name}:{n}")
        elif _is_int(lab):
            builder.add(path, int(lab), f"{list_path.name}:{n}")
        else:
            builder.problem(f"{path}: unknown class {lab!r} ({list_path.name}:{n})")
    return builder.build(problems)


def write_list_file(
    path: str | Path, samples: Iterable[Sample], class_names: list[str], root: str | Path
) -> Path:
    """Write `<path relative to root> <class name>` lines (atomically); returns the path written.

    Class names with whitespace could not be read back (the label is the last word): refused.
    """
    bad = [n for n in class_names if not n or n.split() != [n]]
    if bad:
        raise ValueError(f"class names with whitespace cannot go in a list file: {bad}")
    root = Path(root)
    lines = []
    for s in samples:
        rel = Path(os.path.relpath(Path(s.path), root)).as_posix()
        lines.append(f"{rel} {class_names[s.label]}\n")
    return write_text_atomic(path, "".join(lines))


def write_class_list(path: str | Path, class_names: list[str]) -> Path:
    return write_text_atomic(path, "".join(f"{n}\n" for n in class_names))


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write via a temp file + os.replace, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
