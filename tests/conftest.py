import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is not present")
    return SHARED_DATA


TINY_CLASSES = ["wave", "clap", "jump"]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A saved checkpoint of a tiny ST-MANet (R10, base width 8, 3 classes; 8 frames, stride 1,
    64x64): fast enough for CPU tests of loading, prediction and attention maps. Read-only:
    tests that modify a checkpoint copy it first."""
    import torch

    from core.checkpoint import save_checkpoint
    from core.data.clips import ClipConfig
    from core.model import build_model, config_by_name

    torch.manual_seed(0)
    model = build_model(config_by_name("stmanet_r10", num_classes=3, base_width=8, residual_gamma_init=0.5))
    clip_cfg = ClipConfig(num_frames=8, stride=1, height=64, width=64, max_windows=None)
    folder = tmp_path_factory.mktemp("tiny") / "checkpoint"
    save_checkpoint(folder, model.eval(), clip_cfg, TINY_CLASSES, metrics={"top1": 0.5}, data_source="random init")
    return folder
