"""The body-gesture set (../shared/data/gestures, see its README): list files split by subject.

Layout: <root>/S1 .. S8/<class>_<take>_<distance>_<framing>.avi; the class is the file name's
prefix before the first '_'. Train and validation are split by subject, never by clip: the same
person on both sides measures memory of that person, not recognition of the gesture.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .listfile import write_class_list, write_list_file
from .samples import Sample, VideoList, is_video_file

TRAIN_SUBJECTS = ("S1", "S2", "S3", "S4", "S5", "S6")
VAL_SUBJECTS = ("S7", "S8")
# Horizontal flip mirrors the pointing arm: use as ClipConfig(flip_label_swap=GESTURE_FLIP_SWAP).
GESTURE_FLIP_SWAP = (("left", "right"),)


def gesture_label(path: Path) -> str:
    """`stop_1_1m_upper.avi` -> `stop`."""
    return path.name.split("_", 1)[0]


def _subject_files(root: Path, subjects: tuple[str, ...]) -> list[Path]:
    files = []
    for subject in subjects:
        folder = root / subject
        if not folder.is_dir():
            raise FileNotFoundError(f"gesture subject folder not found: {folder}")
        files += sorted(p for p in folder.iterdir() if is_video_file(p))
    return files


def load_gesture_split(
    gesture_root: str | Path,
    train_subjects: tuple[str, ...] = TRAIN_SUBJECTS,
    val_subjects: tuple[str, ...] = VAL_SUBJECTS,
) -> tuple[VideoList, VideoList]:
    """(train, val) VideoLists straight from the folders; classes = sorted labels over both."""
    overlap = sorted(set(train_subjects) & set(val_subjects))
    if overlap:
        raise ValueError(f"subjects {overlap} are in both train and val: split by subject only")
    root = Path(gesture_root)
    train_files = _subject_files(root, tuple(train_subjects))
    val_files = _subject_files(root, tuple(val_subjects))
    classes = sorted({gesture_label(p) for p in train_files + val_files})
    index = {c: i for i, c in enumerate(classes)}

    def to_list(files: list[Path]) -> VideoList:
        return VideoList([Sample(p, index[gesture_label(p)]) for p in files], list(classes))

    return to_list(train_files), to_list(val_files)


def write_gesture_lists(
    gesture_root: str | Path,
    out_dir: str | Path,
    train_subjects: tuple[str, ...] = TRAIN_SUBJECTS,
    val_subjects: tuple[str, ...] = VAL_SUBJECTS,
) -> tuple[Path, Path, Path]:
    """Write train.txt, val.txt (paths relative to gesture_root) and classes.txt into out_dir.

    Read them back with read_list_file(list_path, root=gesture_root, class_list=classes_path).
    """
    train, val = load_gesture_split(gesture_root, train_subjects, val_subjects)
    out = Path(out_dir)
    return (
        write_list_file(out / "train.txt", train.samples, train.class_names, gesture_root),
        write_list_file(out / "val.txt", val.samples, val.class_names, gesture_root),
        write_class_list(out / "classes.txt", train.class_names),
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m core.data.gestures GESTURE_ROOT OUT_DIR`: write train.txt, val.txt, classes.txt."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("gesture_root")
    parser.add_argument("out_dir")
    parser.add_argument("--train-subjects", nargs="+", default=list(TRAIN_SUBJECTS))
    parser.add_argument("--val-subjects", nargs="*", default=list(VAL_SUBJECTS),
                        help="none: every subject trains (the shipped model; report cross-validation instead)")
    args = parser.parse_args(argv)
    for path in write_gesture_lists(args.gesture_root, args.out_dir, tuple(args.train_subjects), tuple(args.val_subjects)):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
