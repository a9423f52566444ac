"""Dataset readers on tiny generated trees built from the real split-file formats."""
import json
from pathlib import Path

import pytest

from core.data.diving48 import read_diving48
from core.data.folder import read_class_folders
from core.data.gestures import load_gesture_split, write_gesture_lists
from core.data.hmdb51 import read_hmdb51
from core.data.listfile import read_list_file, write_class_list, write_list_file
from core.data.samples import Sample
from core.data.ucf101 import read_ucf101


def _stand_in(path: Path) -> Path:
    """A real (tiny, 3-frame) video under the name a split file lists."""
    from conftest import write_index_video

    return write_index_video(path, 3, width=16, height=16)


# ---------------------------------------------------------------- list files


def test_list_file_names_spaces_comments_and_problems(tmp_path):
    for rel in ("a/one.avi", "b c/two words.mp4", "a/three.avi"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    lst = tmp_path / "train.txt"
    lst.write_text(
        "# comment\n\na/one.avi  jump\nb c/two words.mp4\trun\r\na/one.avi jump\n"
        "a/missing.avi run\nnolabel\na/three.avi swim\n",
        encoding="utf-8",
    )
    vl = read_list_file(lst, tmp_path)
    assert vl.class_names == ["jump", "run", "swim"]
    assert vl.samples == [Sample(tmp_path / "a/one.avi", 0), Sample(tmp_path / "b c/two words.mp4", 1),
                          Sample(tmp_path / "a/three.avi", 2)]
    text = "\n".join(vl.problems)
    assert len(vl.problems) == 3
    assert "duplicate" in text and "missing.avi: file not found" in text and "no label" in text
    # With a class list: unknown names are problems, integer labels index it, root defaults to the list's folder.
    classes = write_class_list(tmp_path / "classes.txt", ["run", "jump"])
    lst.write_text("a/one.avi jump\na/three.avi swim\nb c/two words.mp4 0\n", encoding="utf-8")
    vl = read_list_file(lst, class_list=classes)
    assert vl.class_names == ["run", "jump"] and [s.label for s in vl.samples] == [1, 0]
    assert len(vl.problems) == 1 and "unknown class 'swim'" in vl.problems[0]


def test_list_file_integer_labels_without_class_list(tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_text("x.avi 2\ny.avi 0\n")
    vl = read_list_file(lst, tmp_path, check_files=False)
    assert vl.class_names == ["0", "1", "2"] and [s.label for s in vl.samples] == [2, 0]


def test_list_file_round_trip(tmp_path):
    samples = [Sample(tmp_path / "v" / "a b.avi", 1), Sample(tmp_path / "w.avi", 0)]
    for s in samples:
        s.path.parent.mkdir(exist_ok=True)
        s.path.write_bytes(b"x")
    path = write_list_file(tmp_path / "out" / "l.txt", samples, ["p", "q"], tmp_path)
    assert path.read_text() == "v/a b.avi q\nw.avi p\n"
    vl = read_list_file(path, tmp_path, class_list=write_class_list(tmp_path / "c.txt", ["p", "q"]))
    assert vl.samples == samples and vl.problems == []
    with pytest.raises(ValueError, match="whitespace"):
        write_list_file(tmp_path / "bad.txt", samples, ["p", "two words"], tmp_path)


# ---------------------------------------------------------------- gestures (real file names, no decoding)


def test_gesture_lists_split_by_subject(shared_data, tmp_path):
    root = shared_data / "gestures"
    train_path, val_path, classes_path = write_gesture_lists(root, tmp_path)
    classes = classes_path.read_text().split()
    assert classes == sorted(classes) and len(classes) == 15 and {"left", "right", "stop"} <= set(classes)
    train = read_list_file(train_path, root, class_list=classes_path)
    val = read_list_file(val_path, root, class_list=classes_path)
    assert (len(train), len(val)) == (270, 90) and train.problems == val.problems == []
    subjects = lambda vl: {s.path.parent.name for s in vl.samples}  # noqa: E731
    assert subjects(train) == {f"S{i}" for i in range(1, 7)} and subjects(val) == {"S7", "S8"}
    for s in train.samples + val.samples:
        assert s.path.name.startswith(classes[s.label] + "_")
    direct_train, _ = load_gesture_split(root)
    assert direct_train.samples == train.samples
    with pytest.raises(ValueError, match="both"):
        write_gesture_lists(root, tmp_path, train_subjects=("S1", "S2"), val_subjects=("S2",))


# ---------------------------------------------------------------- class folders


def test_class_folders_stratified_seeded_split(tmp_path):
    for cls, n in (("walk", 10), ("run", 5), ("jump", 1)):
        for i in range(n):
            (tmp_path / cls / f"{cls}{i}.{'mp4' if i % 2 else 'AVI'}").parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / cls / f"{cls}{i}.{'mp4' if i % 2 else 'AVI'}").write_bytes(b"x")
    (tmp_path / "walk" / "notes.txt").write_text("not a video")
    (tmp_path / "empty").mkdir()
    train, val = read_class_folders(tmp_path, val_fraction=0.2, seed=0)
    assert train.class_names == val.class_names == ["jump", "run", "walk"]
    assert val.class_counts() == {"jump": 0, "run": 1, "walk": 2}
    assert train.class_counts() == {"jump": 1, "run": 4, "walk": 8}
    assert not {s.path for s in train.samples} & {s.path for s in val.samples}
    assert any("empty" in p for p in train.problems)
    again, _ = read_class_folders(tmp_path, val_fraction=0.2, seed=0)
    other = [read_class_folders(tmp_path, val_fraction=0.2, seed=s)[1].samples for s in range(1, 6)]
    assert again.samples == train.samples and any(o != val.samples for o in other)


# ---------------------------------------------------------------- UCF-101 (real split files)


def test_ucf101_on_real_split_files(shared_data, tmp_path):
    splits = shared_data / "splits" / "ucf101"
    train_lines = (splits / "trainlist01.txt").read_text().splitlines()
    test_lines = (splits / "testlist01.txt").read_text().splitlines()
    keep_train = [l.split()[0] for l in train_lines if l.startswith(("ApplyEyeMakeup/", "HandstandPushups/"))][::20]
    keep_test = [l.split()[0] for l in test_lines if l.startswith(("Archery/", "YoYo/"))][::20]
    for rel in keep_train + keep_test:
        _stand_in(tmp_path / rel)
    train, test = read_ucf101(tmp_path, splits, split=1)
    assert len(train.class_names) == 101 and train.class_names[0] == "ApplyEyeMakeup" and train.class_names[-1] == "YoYo"
    assert [s.path for s in train.samples] == [tmp_path / r for r in keep_train]
    assert [s.path for s in test.samples] == [tmp_path / r for r in keep_test]
    names = train.class_names
    assert {names[s.label] for s in train.samples} == {"ApplyEyeMakeup", "HandstandPushups"}
    assert all(names[s.label] == s.path.parent.name for s in test.samples)
    assert len(train.problems) == len(train_lines) - len(keep_train)  # the rest: file not found
    assert "file not found" in train.problems[0]
    full_train, full_test = read_ucf101(tmp_path, splits, split=1, check_files=False)
    assert (len(full_train), len(full_test)) == (9537, 3783)


def test_ucf101_bad_lines_are_reported(shared_data, tmp_path):
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "classInd.txt").write_bytes((shared_data / "splits/ucf101/classInd.txt").read_bytes())
    (splits / "trainlist02.txt").write_text(
        "YoYo/v_YoYo_g01_c01.avi 101\r\nYoYo/v_YoYo_g01_c01.avi 101\r\nYoYo/v_YoYo_g02_c01.avi 1\r\n"
    )
    (splits / "testlist02.txt").write_text("Juggling/v_Juggling_g01_c01.avi\nyoyo/v_YoYo_g03_c01.avi\n")
    train, test = read_ucf101(tmp_path, splits, split=2, check_files=False)
    assert [s.label for s in train.samples] == [100]
    assert any("duplicate" in p for p in train.problems) and any("disagrees" in p for p in train.problems)
    assert [s.label for s in test.samples] == [100]  # folder matched case-insensitively
    assert "unknown class folder 'Juggling'" in test.problems[0]


# ---------------------------------------------------------------- HMDB-51 (real split files)


def test_hmdb51_on_real_split_files(shared_data, tmp_path):
    splits = shared_data / "splits" / "hmdb51"
    expected = {"1": [], "2": []}
    for cls in ("brush_hair", "wave"):
        for line in (splits / f"{cls}_test_split1.txt").read_text().splitlines()[::10]:
            name, kind = line.split()
            if kind in expected:
                _stand_in(tmp_path / cls / name)
                expected[kind].append(tmp_path / cls / name)
    train, test = read_hmdb51(tmp_path, splits, split=1)
    labels = (shared_data / "labels" / "hmdb51_label_map.txt").read_text().split()
    assert train.class_names == labels and len(labels) == 51
    assert [s.path for s in train.samples] == expected["1"] and [s.path for s in test.samples] == expected["2"]
    assert all(train.class_names[s.label] == s.path.parent.name for s in train.samples + test.samples)
    assert all("file not found" in p for p in train.problems + test.problems)
    full_train, full_test = read_hmdb51(tmp_path, splits, split=1, check_files=False)
    assert (len(full_train), len(full_test)) == (3570, 1530)


# ---------------------------------------------------------------- Diving48 (documented JSON format)


def test_diving48(shared_data, tmp_path):
    names = (shared_data / "labels" / "diving48_label_map.txt").read_text().split()
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps([n.split("+") for n in names]))
    train_json, test_json = tmp_path / "train.json", tmp_path / "test.json"
    entries = [{"vid_name": f"-clip{i}_{i:05d}", "label": i * 7, "start_frame": 0, "end_frame": 40} for i in range(4)]
    train_json.write_text(json.dumps(entries[:3] + [{"vid_name": "x", "label": 48}, {"label": 1}]))
    test_json.write_text(json.dumps(entries[3:] + [entries[3]]))
    for e in entries[:3] + entries[3:]:
        _stand_in(tmp_path / "rgb" / f"{e['vid_name']}.mp4")
    train, test = read_diving48(tmp_path / "rgb", train_json, test_json, vocab)
    assert train.class_names == names and len(names) == 48
    assert [(s.path.name, s.label) for s in train.samples] == [(f"{e['vid_name']}.mp4", e["label"]) for e in entries[:3]]
    assert len(train.problems) == 2 and "out of range" in train.problems[0] and "lacks" in train.problems[1]
    assert len(test.samples) == 1 and "duplicate" in test.problems[0]
