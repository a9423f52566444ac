"""Diving48: JSON split files and a vocabulary of 4-attribute classes.

Split JSON: a list of {"vid_name": str, "label": int, "start_frame": int, "end_frame": int};
the vocabulary JSON: a list of 48 [takeoff, somersaults, twists, flight] lists, the class name
being the attributes joined by '+' (as mmaction2's label map). Videos at root/<vid_name>.mp4.
The distributed clips are already trimmed, so start_frame/end_frame are not used.
"""
from __future__ import annotations

import json
from pathlib import Path

from .samples import ListBuilder, VideoList


def read_diving48_vocab(path: str | Path) -> list[str]:
    vocab = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(vocab, list) or not all(isinstance(v, (list, tuple)) for v in vocab):
        raise ValueError(f"{path}: expected a JSON list of attribute lists")
    return ["+".join(str(a) for a in attributes) for attributes in vocab]


def read_diving48(
    root: str | Path, train_json: str | Path, test_json: str | Path, vocab_json: str | Path, check_files: bool = True
) -> tuple[VideoList, VideoList]:
    """(train, test); bad entries are skipped and listed in .problems."""
    root = Path(root)
    names = read_diving48_vocab(vocab_json)
    return _read_split(root, Path(train_json), names, check_files), _read_split(root, Path(test_json), names, check_files)


def _read_split(root: Path, split_json: Path, names: list[str], check_files: bool) -> VideoList:
    entries = json.loads(split_json.read_text(encoding="utf-8"))
    if not isinstance(entries, list):
        raise ValueError(f"{split_json}: expected a JSON list of clips")
    builder = ListBuilder(names, check_files)
    for n, entry in enumerate(entries):
        where = f"{split_json.name}[{n}]"
        try:
            vid, label = str(entry["vid_name"]), int(entry["label"])
        except (KeyError, TypeError, ValueError):
            builder.problem(f"{split_json}: entry {n} lacks vid_name or an integer label: {str(entry)[:80]}")
            continue
        builder.add(root / f"{vid}.mp4", label, where)
    return builder.build()
