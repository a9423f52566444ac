"""Checkpoint folders: round trip, Hub download/push (mocked), atomic writes, clear refusals."""
from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from core import checkpoint as ck
from core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from core.data.clips import ClipConfig
from core.model import build_model, config_by_name

CLASSES = ["wave", "clap", "jump"]
TOKEN = "hf_SECRETtokenDoNotLeak123"


def tiny_model(num_classes: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(config_by_name("stmanet_r10", num_classes=num_classes, base_width=8)).eval()


CLIP = ClipConfig(num_frames=8, stride=1, height=64, width=64)


def clip_batch() -> torch.Tensor:
    return torch.randn(2, 3, 8, 64, 64, generator=torch.Generator().manual_seed(1))


def copy_of(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "copy"))


# ----------------------------------------------------------------------------- round trip


def test_round_trip_weights_predictions_and_meta(tmp_path):
    model = tiny_model()
    folder = save_checkpoint(
        tmp_path / "ck", model, CLIP, CLASSES, metrics={"top1": np.float32(0.75)}, training={"epoch": 3},
        data_source="unit test",
    )
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = load_checkpoint(folder, expected_classes=CLASSES, expected_model=model.cfg)
    assert not loaded.model.training
    assert loaded.model_cfg == model.cfg and loaded.clip_cfg == CLIP and loaded.class_names == CLASSES
    assert loaded.meta["metrics"] == {"top1": 0.75} and loaded.meta["training"] == {"epoch": 3}
    assert loaded.meta["data_source"] == "unit test" and loaded.path == folder
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.model.state_dict().items()):
        assert torch.equal(a, b), k
    with torch.inference_mode():
        assert torch.equal(model(clip_batch()).logits, loaded.model(clip_batch()).logits)
    card = (folder / "README.md").read_text()
    assert "wave, clap, jump" in card and "unit test" in card and card.startswith("---\n")
    # a weights file inside the folder, or its config.json, works as the path too
    assert load_checkpoint(folder / "model.safetensors").class_names == CLASSES


def test_model_card_shows_attention_quality_and_the_input(tmp_path):
    from core.model import build_model, config_by_name

    model = build_model(config_by_name("stmanet_r10", num_classes=3, base_width=4, input_mode="grey_diff"))
    quality = {"spatial": {"stage 2": {"input_dependence": 0.61, "concentration": 0.2, "motion_lift": 2.5,
                                       "degenerate": None},
                           "stage 5": {"input_dependence": 0.0, "concentration": 0.25, "motion_lift": None,
                                       "degenerate": "fixed and one-hot"}}}
    folder = save_checkpoint(tmp_path / "ck", model, CLIP.replace(sampling="segments"), CLASSES,
                             metrics={"top1": 0.5, "attention_quality": quality})
    card = (folder / "README.md").read_text()
    assert "## Attention quality" in card
    assert "| spatial | stage 2 | 0.61 | 0.20 | 2.50 | ok |" in card
    assert "| spatial | stage 5 | 0.00 | 0.25 | - | fixed and one-hot |" in card
    assert "segment sampling" in card and "grey frame differences" in card
    assert "attention_quality:" not in card  # a table, not a JSON dump in the metrics list
    paired = build_model(config_by_name("stmanet_r10", num_classes=3, base_width=4, input_mode="grey_pair_diff"))
    card = (save_checkpoint(tmp_path / "pairs", paired, CLIP.replace(sampling="segment_pairs", num_frames=16),
                            CLASSES) / "README.md").read_text()
    assert "two consecutive frames from each of 8 equal time segments" in card
    assert "grey differences of consecutive frame pairs" in card


def test_training_state_round_trip_and_unsafe_objects_refused(tmp_path):
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(clip_batch()).logits.sum().backward()
    optimizer.step()
    state = {
        "optimizer": optimizer.state_dict(),
        "epoch": 4,
        "global_step": 120,
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
    }
    ck.save_training_state(tmp_path, state)
    back = ck.load_training_state(tmp_path)
    assert back["epoch"] == 4 and back["global_step"] == 120
    assert np.array_equal(back["rng"]["numpy"][1], state["rng"]["numpy"][1])
    np.random.set_state(back["rng"]["numpy"])
    random.setstate(back["rng"]["python"])
    fresh = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    fresh.load_state_dict(back["optimizer"])

    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        ck.save_training_state(tmp_path, {"epoch": 5, "oops": Path("x")})
    assert ck.load_training_state(tmp_path)["epoch"] == 4  # the refused save replaced nothing
    with pytest.raises(CheckpointError, match="no training state"):
        ck.load_training_state(tmp_path / "elsewhere")


# ----------------------------------------------------------------------------- atomic writes


def test_crash_while_writing_weights_keeps_old_checkpoint(tmp_path, monkeypatch):
    old = tiny_model(seed=0)
    folder = save_checkpoint(tmp_path / "ck", old, CLIP, CLASSES)
    before = (folder / "model.safetensors").read_bytes()

    def crashing_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x00" * 1000)  # partial data, then the process "dies"
        raise OSError("disk full")

    monkeypatch.setattr(ck, "save_file", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(folder, tiny_model(seed=1), CLIP, CLASSES)
    assert (folder / "model.safetensors").read_bytes() == before
    assert not list(folder.glob("*.tmp-*"))  # the temp file is cleaned up
    loaded = load_checkpoint(folder)
    assert torch.equal(loaded.model.classifier.weight, old.classifier.weight)


def test_interrupted_between_weights_and_config_is_detected(tmp_path, monkeypatch):
    folder = save_checkpoint(tmp_path / "ck", tiny_model(seed=0), CLIP, CLASSES)
    real = ck._write_text

    def die_on_config(target, text):
        if target.name == "config.json":
            raise KeyboardInterrupt  # killed after the weights were replaced
        real(target, text)

    monkeypatch.setattr(ck, "_write_text", die_on_config)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(folder, tiny_model(seed=1), CLIP, CLASSES)
    with pytest.raises(CheckpointError, match="different saves"):
        load_checkpoint(folder)


def test_new_folder_without_config_is_incomplete(tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "save_file", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("killed")))
    with pytest.raises(RuntimeError):
        save_checkpoint(tmp_path / "new", tiny_model(), CLIP, CLASSES)
    with pytest.raises(CheckpointError, match=r"incomplete: missing config\.json, model\.safetensors"):
        load_checkpoint(tmp_path / "new")


# ----------------------------------------------------------------------------- refusals


def test_class_and_config_mismatch_messages(tiny_checkpoint):
    with pytest.raises(CheckpointError, match=r"checkpoint has 3 classes \(wave, clap, jump\) but 101 were expected"):
        load_checkpoint(tiny_checkpoint, expected_classes=101)
    with pytest.raises(CheckpointError, match="another order: position 0 is 'wave', expected 'clap'"):
        load_checkpoint(tiny_checkpoint, expected_classes=["clap", "wave", "jump"])
    with pytest.raises(CheckpointError, match="not expected jump; missing run"):
        load_checkpoint(tiny_checkpoint, expected_classes=["wave", "clap", "run"])
    other = config_by_name("stmanet_r18", num_classes=3, base_width=8)
    with pytest.raises(CheckpointError, match="depth 10 vs 18"):
        load_checkpoint(tiny_checkpoint, expected_model=other)


def test_weights_that_do_not_fit_the_config(tiny_checkpoint, tmp_path):
    folder = copy_of(tiny_checkpoint, tmp_path)
    meta = json.loads((folder / "config.json").read_text())
    meta["model"]["num_classes"] = 5
    meta["model"]["use_sda"] = False
    meta["class_names"] = ["a", "b", "c", "d", "e"]
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(folder)
    message = str(info.value)
    assert "weights do not match config" in message
    assert "unexpected keys sda." in message
    assert "shape mismatch for classifier.weight: (3, 120) vs (5, 120)" in message


def test_missing_files_are_named(tiny_checkpoint, tmp_path):
    folder = copy_of(tiny_checkpoint, tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"incomplete: missing model\.safetensors"):
        load_checkpoint(folder)
    with pytest.raises(CheckpointError, match="not an existing folder or file"):
        load_checkpoint(tmp_path / "no" / "such" / "dir")
    (folder / "config.json").write_text('{"format": "something-else"}')
    shutil.copy(tiny_checkpoint / "model.safetensors", folder)
    with pytest.raises(CheckpointError, match="not an ST-MANet checkpoint config"):
        load_checkpoint(folder)


def test_truncated_weights_are_reported(tiny_checkpoint, tmp_path):
    folder = copy_of(tiny_checkpoint, tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(folder)


class _Exploit:
    marker: Path

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_code_is_refused_and_never_runs(tiny_checkpoint, tmp_path):
    folder = copy_of(tiny_checkpoint, tmp_path)
    marker = tmp_path / "PWNED"
    state = {k: v for k, v in load_checkpoint(tiny_checkpoint).model.state_dict().items()}
    torch.save({**state, "payload": _Exploit(marker)}, folder / "evil.pt")
    with pytest.raises(CheckpointError, match=r"refusing to load .*evil\.pt.*system"):
        load_checkpoint(folder / "evil.pt")
    assert not marker.exists()

    # a plain tensor state dict in a .pt file is fine: weights_only=True accepts it
    torch.save({"state_dict": state}, folder / "plain.pt")
    loaded = load_checkpoint(folder / "plain.pt")
    assert torch.equal(loaded.model.classifier.weight, state["classifier.weight"])


# ----------------------------------------------------------------------------- Hub


def test_hub_repo_id_downloads_only_safe_files(tiny_checkpoint, monkeypatch, tmp_path):
    calls = []

    def fake_snapshot_download(repo_id, allow_patterns=None, **kwargs):
        calls.append((repo_id, allow_patterns))
        target = tmp_path / "hub-cache" / repo_id.replace("/", "--")
        shutil.copytree(tiny_checkpoint, target, dirs_exist_ok=True)
        return str(target)

    monkeypatch.setattr(ck, "snapshot_download", fake_snapshot_download)
    monkeypatch.chdir(tmp_path)  # "someone/tiny" is not a local path here
    loaded = load_checkpoint("someone/tiny")
    assert loaded.class_names == CLASSES
    assert calls == [("someone/tiny", ["*.safetensors", "config.json", "README.md"])]

    def offline(repo_id, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(ck, "snapshot_download", offline)
    with pytest.raises(CheckpointError, match="not a local folder, and downloading it .* failed: ConnectionError"):
        load_checkpoint("someone/missing")


class FakeApi:
    instances: list = []

    def __init__(self, token=None, fail_with: str | None = None) -> None:
        self.token, self.fail_with, self.calls = token, fail_with, []
        FakeApi.instances.append(self)

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        if self.fail_with:
            raise RuntimeError(self.fail_with)

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))


def test_push_to_hub_never_leaks_the_token(tiny_checkpoint, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    folder = copy_of(tiny_checkpoint, tmp_path)
    ck.save_training_state(folder, {"epoch": 1})
    monkeypatch.setattr(ck, "HfApi", FakeApi)
    url = ck.push_to_hub(folder, "me/tiny", TOKEN, private=True)
    api = FakeApi.instances[-1]
    assert api.token == TOKEN and url == "https://huggingface.co/me/tiny"
    (_, repo, create_kwargs), (_, upload) = api.calls
    assert repo == "me/tiny" and create_kwargs["exist_ok"] is True and create_kwargs["private"] is True
    assert upload["folder_path"] == str(folder) and "training_state.pt" in upload["ignore_patterns"]

    with pytest.raises(CheckpointError) as info:
        ck.push_to_hub(folder, "me/tiny", TOKEN, api=FakeApi(fail_with=f"401 bad token {TOKEN}"))
    assert TOKEN not in str(info.value) and "***" in str(info.value)

    assert TOKEN not in caplog.text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


# ----------------------------------------------------------------------------- fine-tuning


def test_replace_classifier_for_fine_tuning(tmp_path):
    model = tiny_model()
    stem_before = model.stem.conv[0].weight.clone()
    new = ck.replace_classifier(model, 5)
    assert new is model and new.cfg.num_classes == 5
    assert new.classifier.out_features == 5 and all(h.out_features == 5 for h in new.stage_heads)
    assert torch.equal(new.stem.conv[0].weight, stem_before)
    assert new(clip_batch()).logits.shape == (2, 5)
    folder = save_checkpoint(tmp_path / "ft", new, CLIP, list("abcde"))
    assert load_checkpoint(folder, expected_classes=5).model_cfg.num_classes == 5


def test_the_checkpoint_questions_others_ask(tiny_checkpoint, tmp_path):
    """Whether a folder is a whole checkpoint, why not, and a stamp that moves on each save: asked
    here, so no caller needs to know the file names."""
    from core.checkpoint import is_complete, saved_stamp, unusable_reason

    assert is_complete(tiny_checkpoint) and unusable_reason(tiny_checkpoint) is None
    assert saved_stamp(tiny_checkpoint)[0] is not None and saved_stamp(tmp_path / "none") == (None, None)
    assert unusable_reason(tmp_path / "none") == "the folder does not exist"
    half = tmp_path / "half"
    half.mkdir()
    (half / "model.pt").write_bytes(b"pickle")
    assert unusable_reason(half) == "it has no config.json"
    shutil.copyfile(tiny_checkpoint / "config.json", half / "config.json")
    assert not is_complete(half)
    assert unusable_reason(half).startswith("it has no model.safetensors (model.pt is a pickle")


def test_predictor_facts(tiny_checkpoint):
    from core.model import forward_flops
    from core.predict import Predictor

    facts = Predictor(tiny_checkpoint, device="cpu").facts()
    loaded = load_checkpoint(tiny_checkpoint)
    clip = loaded.clip_cfg
    assert facts["classes"] == list(loaded.class_names) and facts["model"] == loaded.model_cfg.to_dict()
    assert facts["params"] == sum(p.numel() for p in loaded.model.parameters())
    assert facts["gflops"] == forward_flops(loaded.model_cfg, clip.num_frames, clip.height, clip.width) / 1e9 > 0
