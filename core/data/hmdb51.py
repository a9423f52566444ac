"""HMDB-51 with its official splits: splits_dir/<class>_test_split<N>.txt.

Each line `<video>.avi <1|2|0>`: 1 train, 2 test, 0 not used in this split. Videos at
root/<class>/<video>. Classes are the sorted class names of the split files found (51).
"""
from __future__ import annotations

from pathlib import Path

from .samples import ListBuilder, VideoList


def read_hmdb51(
    root: str | Path, splits_dir: str | Path, split: int = 1, check_files: bool = True
) -> tuple[VideoList, VideoList]:
    """(train, test) of split 1, 2 or 3; bad lines are skipped and listed in .problems."""
    if split not in (1, 2, 3):
        raise ValueError(f"HMDB-51 has splits 1, 2, 3; got {split}")
    root, splits_dir = Path(root), Path(splits_dir)
    suffix = f"_test_split{split}.txt"
    files = {p.name[: -len(suffix)]: p for p in splits_dir.glob(f"*{suffix}")}
    if not files:
        raise FileNotFoundError(f"no HMDB-51 split files *{suffix} in {splits_dir}")
    names = sorted(files)
    train, test = ListBuilder(names, check_files), ListBuilder(names, check_files)
    for label, name in enumerate(names):
        split_file = files[name]
        for n, line in enumerate(split_file.read_text(encoding="utf-8").splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            where = f"{split_file.name}:{n}"
            path = root / name / parts[0]
            kind = parts[1] if len(parts) == 2 else None
            if kind == "1":
                train.add(path, label, where)
            elif kind == "2":
                test.add(path, label, where)
            elif kind != "0":
                train.problem(f"{path}: expected `<video> <0|1|2>`, got {line.strip()!r} ({where})")
    return train.build(), test.build()
