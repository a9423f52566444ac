"""UCF-101 with its official splits (classInd.txt, trainlist0N.txt, testlist0N.txt).

classInd.txt: `1 ApplyEyeMakeup` (1-based). trainlist: `ApplyEyeMakeup/v_..._g08_c01.avi 1`;
testlist: the path alone, the class being the folder name. Videos at root/<Class>/<file>.
The files have CRLF line ends; folder names are matched case-insensitively as a fallback.
"""
from __future__ import annotations

from pathlib import Path

from .samples import ListBuilder, VideoList


def read_class_index(path: str | Path) -> list[str]:
    """classInd.txt -> names in index order (line `k Name` is index k - 1)."""
    pairs = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[0].isdigit():
            raise ValueError(f"{path}:{n}: expected `<index> <ClassName>`, got {line!r}")
        pairs.append((int(parts[0]), parts[1]))
    pairs.sort()
    if [k for k, _ in pairs] != list(range(1, len(pairs) + 1)):
        raise ValueError(f"{path}: class indices are not 1..{len(pairs)}")
    return [name for _, name in pairs]


def read_ucf101(
    root: str | Path, splits_dir: str | Path, split: int = 1, check_files: bool = True
) -> tuple[VideoList, VideoList]:
    """(train, test) of split 1, 2 or 3; bad lines are skipped and listed in .problems."""
    if split not in (1, 2, 3):
        raise ValueError(f"UCF-101 has splits 1, 2, 3; got {split}")
    root, splits_dir = Path(root), Path(splits_dir)
    names = read_class_index(splits_dir / "classInd.txt")
    by_folder = {n: i for i, n in enumerate(names)}
    by_folder_lower = {n.lower(): i for i, n in enumerate(names)}
    lists = []
    for kind in ("train", "test"):
        list_path = splits_dir / f"{kind}list{split:02d}.txt"
        builder = ListBuilder(names, check_files)
        for n, line in enumerate(list_path.read_text(encoding="utf-8").splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            rel, where = parts[0], f"{list_path.name}:{n}"
            folder = rel.split("/", 1)[0] if "/" in rel else None
            from_folder = by_folder.get(folder, by_folder_lower.get((folder or "").lower()))
            if len(parts) > 1:
                if not parts[1].isdigit():
                    builder.problem(f"{root / rel}: label {parts[1]!r} is not a class number ({where})")
                    continue
                label = int(parts[1]) - 1
                if from_folder is not None and from_folder != label:
                    builder.problem(
                        f"{root / rel}: label {parts[1]} ({_name(names, label)}) disagrees with its folder ({where})"
                    )
                    continue
            elif from_folder is None:
                builder.problem(f"{root / rel}: unknown class folder {folder!r} ({where})")
                continue
            else:
                label = from_folder
            builder.add(root / rel, label, where)
        lists.append(builder.build())
    return lists[0], lists[1]


def _name(names: list[str], label: int) -> str:
    return names[label] if 0 <= label < len(names) else "out of range"
