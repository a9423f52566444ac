"""Video data: decoding, clip sampling and transforms, dataset readers, the training dataset."""
from .cache import FrameCache
from .clips import (
    ClipConfig,
    clip_to_frames,
    decode_max_side,
    denormalize,
    normalize,
    test_transform,
    test_windows,
    train_indices,
    train_transform,
)
from .dataset import VideoClipDataset, collate_windows, load_test_clips, mean_over_windows, scan_videos
from .listfile import read_class_list, read_list_file, write_class_list, write_list_file
from .samples import VIDEO_EXTENSIONS, Sample, ScanReport, VideoList
from .video import DataWarning, VideoError, VideoInfo, probe_video, read_frames, read_video

__all__ = [
    "FrameCache",
    "ClipConfig",
    "clip_to_frames",
    "decode_max_side",
    "denormalize",
    "normalize",
    "test_transform",
    "test_windows",
    "train_indices",
    "train_transform",
    "VideoClipDataset",
    "collate_windows",
    "load_test_clips",
    "mean_over_windows",
    "scan_videos",
    "read_class_list",
    "read_list_file",
    "write_class_list",
    "write_list_file",
    "VIDEO_EXTENSIONS",
    "Sample",
    "ScanReport",
    "VideoList",
    "DataWarning",
    "VideoError",
    "VideoInfo",
    "probe_video",
    "read_frames",
    "read_video",
]
