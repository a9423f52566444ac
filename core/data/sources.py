"""One entry point from a trainer's data settings to (train, val) video lists, whatever the layout.

Layouts and what they read (fields of core.train.TrainConfig):
  folder    data_root/<class>/<video>, split by val_fraction with the seed
  list      train_list / val_list: `<path relative to data_root> <class>` lines; class_list optional
  ucf101    data_root/<Class>/<video>, splits_dir/{classInd,trainlist0N,testlist0N}.txt
  hmdb51    data_root/<class>/<video>, splits_dir/<class>_test_splitN.txt
  diving48  data_root/<vid>.mp4, train_list/val_list = Diving48_V2_{train,test}.json, class_list = vocab
"""
from __future__ import annotations

from pathlib import Path

from .diving48 import read_diving48
from .folder import read_class_folders
from .hmdb51 import read_hmdb51
from .listfile import read_list_file
from .samples import Sample, VideoList
from .ucf101 import read_ucf101

LAYOUTS = ("folder", "list", "ucf101", "hmdb51", "diving48")


def read_dataset(cfg):
    """(train VideoList, val VideoList) for `cfg` (any object with the TrainConfig data fields).
    The validation list is built on the training list's classes, in its order."""
    layout, root = cfg.data_layout, Path(cfg.data_root)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown data layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    if not root.is_dir():
        raise FileNotFoundError(f"data root {root} is not a folder")
    if layout == "folder":
        return read_class_folders(root, val_fraction=cfg.val_fraction, seed=cfg.seed)
    if layout == "list":
        if not cfg.train_list:
            raise ValueError("the list layout needs --train-list")
        train = read_list_file(cfg.train_list, root, class_list=cfg.class_list)
        if cfg.val_list:
            val = read_list_file(cfg.val_list, root, class_list=cfg.class_list or None)
            val = _on_classes(val, train.class_names)
        else:
            val = VideoList([], list(train.class_names))
        return train, val
    if layout in ("ucf101", "hmdb51"):
        if not cfg.splits_dir:
            raise ValueError(f"the {layout} layout needs --splits-dir")
        reader = read_ucf101 if layout == "ucf101" else read_hmdb51
        return reader(root, cfg.splits_dir, split=cfg.split)
    if not (cfg.train_list and cfg.val_list and cfg.class_list):
        raise ValueError("the diving48 layout needs --train-list, --val-list (JSON) and --class-list (vocab JSON)")
    return read_diving48(root, cfg.train_list, cfg.val_list, cfg.class_list)


def _on_classes(video_list: VideoList, class_names: list[str]) -> VideoList:
    """Re-label a list onto another class order; samples of classes not in it become problems
    (training goes on without them; evaluation, which must not drop classes, uses
    core.evaluate.match_classes and refuses instead)."""
    if list(video_list.class_names) == list(class_names):
        return video_list
    index = {name: i for i, name in enumerate(class_names)}
    samples, problems = [], list(video_list.problems)
    for s in video_list.samples:
        name = video_list.class_names[s.label]
        if name in index:
            samples.append(Sample(s.path, index[name]))
        else:
            problems.append(f"{s.path}: class {name!r} is not among the training classes; skipped")
    return VideoList(samples, list(class_names), problems)
