"""The Hub round trip through the CLI, against a local folder standing in for the Hub."""
import shutil

import torch

import core.checkpoint as checkpoint
from core import hub
from core.data.clips import ClipConfig
from core.model import build_model, config_by_name

TOKEN = "hf_secret_token_never_written"


def _tiny_checkpoint(folder):
    torch.manual_seed(0)
    model = build_model(config_by_name("stmanet_r10", num_classes=3, base_width=4))
    checkpoint.save_checkpoint(folder, model, ClipConfig(num_frames=8, stride=1, height=32, width=32), ["a", "b", "c"])
    return model


class FolderHub:
    """HfApi stand-in: a repo is a folder under `root`."""

    def __init__(self, root):
        self.root = root
        self.created = []

    def create_repo(self, repo_id, private=False, exist_ok=True, repo_type="model"):
        self.created.append((repo_id, private))

    def upload_folder(self, repo_id, folder_path, repo_type, ignore_patterns, commit_message):
        shutil.copytree(folder_path, self.root / repo_id, ignore=shutil.ignore_patterns(*ignore_patterns))


def test_push_then_pull_round_trip(tmp_path, monkeypatch, capsys, caplog):
    model = _tiny_checkpoint(tmp_path / "run")
    checkpoint.save_training_state(tmp_path / "run", {"epoch": 1})
    fake = FolderHub(tmp_path / "hub")
    monkeypatch.setattr(checkpoint, "HfApi", lambda token=None: fake)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert hub.main(["push", str(tmp_path / "run"), "me/tiny"]) == 0
    pushed = tmp_path / "hub" / "me" / "tiny"
    assert (pushed / "model.safetensors").is_file() and not (pushed / "training_state.pt").exists()

    def fake_snapshot(repo_id, revision=None, allow_patterns=None, token=None):
        return str(tmp_path / "hub" / repo_id)

    monkeypatch.setattr(checkpoint, "snapshot_download", fake_snapshot)
    assert hub.main(["pull", "me/tiny", str(tmp_path / "pulled")]) == 0
    loaded = checkpoint.load_checkpoint(tmp_path / "pulled")
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], value)
    written = "".join(p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*") if p.is_file())
    assert TOKEN not in written and TOKEN not in capsys.readouterr().out and TOKEN not in caplog.text


def test_pull_of_a_missing_repo_is_a_clear_error(tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(checkpoint, "snapshot_download", offline)
    assert hub.main(["pull", "me/absent", str(tmp_path / "x")]) == 2
    assert "downloading it from the Hugging Face Hub failed" in capsys.readouterr().err
