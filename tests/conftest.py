import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_DATA = ROOT.parent / "shared" / "data"

from core.capability import bf16_skip_reason  # noqa: E402  (after sys.path: core importable)

# bf16 tests run only where core.capability says this CPU can (and STMANET_NO_BF16 is unset);
# elsewhere they are skipped with its reason, and the fp32 path they stand beside still runs
needs_cpu_bf16 = pytest.mark.skipif(bf16_skip_reason("cpu") is not None, reason=f"bf16: {bf16_skip_reason('cpu')}")


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


# ---------------------------------------------------------------- generated videos (core/data tests)
# Frames encode their index in INDEX_BITS vertical black/white stripes under a red bar, so a test
# can read back which frame it got (robust to MJPG compression and downsizing); the red bar
# (pure red, written as BGR) shows whether channels come out RGB.
INDEX_BITS = 10


def write_index_video(path, n_frames: int, width: int = 80, height: int = 48, fps: float = 25.0) -> Path:
    import cv2
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), f"cv2.VideoWriter cannot write {path}"
    bar = height // 4
    for i in range(n_frames):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[:bar] = (0, 0, 255)  # BGR red
        for b in range(INDEX_BITS):
            if (i >> b) & 1:
                frame[bar:, b * width // INDEX_BITS : (b + 1) * width // INDEX_BITS] = 255
        writer.write(frame)
    writer.release()
    return path


def decode_frame_index(frame) -> int:
    """Index written by write_index_video, from an (H,W,3) RGB frame at any size."""
    h, w = frame.shape[:2]
    row = frame[(h // 4 + h) // 2 + 1, :, :].astype(float).mean(axis=-1)
    bits = [row[int((b + 0.5) * w / INDEX_BITS)] > 128 for b in range(INDEX_BITS)]
    return sum(1 << b for b, on in enumerate(bits) if on)


@pytest.fixture
def make_video():
    """make_video(path, n_frames, width=80, height=48, fps=25.0) -> path of an MJPG .avi."""
    return write_index_video


@pytest.fixture
def frame_index():
    """frame_index(rgb_frame) -> the index a make_video frame encodes."""
    return decode_frame_index


from core.data.synthetic import RHYTHM_PERIODS, write_rhythm_dataset, write_rhythm_set, write_rhythm_video  # noqa: E402,F401


@pytest.fixture(scope="session")
def rhythm_data(tmp_path_factory) -> Path:
    """A small motion-rhythm dataset (read-only): train.txt (12 videos a class), val.txt (6 a
    class, other seeds), classes.txt; 24 frames of 40x40 each."""
    return write_rhythm_set(tmp_path_factory.mktemp("rhythm"), 12, 6)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models train ~10x faster on one thread when the two cores are shared (a run in the
    background, another test process): torch's worker threads otherwise spin waiting for each
    other. Subprocesses get OMP_NUM_THREADS=1 from `one_thread_env` for the same reason, which
    also keeps their arithmetic identical to in-process runs."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def one_thread_env(**extra) -> dict:
    """Environment for a `python -m core...` subprocess: this checkout on the path, one thread."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}


@pytest.fixture(scope="session")
def moving_square(tmp_path_factory):
    """A generated 20-frame video (10 fps, 80x60) of a square moving right: 2 full windows + a tail."""
    import numpy as np

    from core.attention_maps import write_video

    frames = np.zeros((20, 60, 80, 3), np.uint8)
    for i in range(20):
        frames[i, 20:40, 2 + 3 * i : 22 + 3 * i] = (255, 200, 0)
    return write_video(frames, tmp_path_factory.mktemp("videos") / "square.mp4", fps=10)
