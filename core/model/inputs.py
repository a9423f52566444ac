"""What the stem sees: the clip as given (the paper), or its grey frame differences.

  rgb:             X = clip                                            (B, 3, T, H, W)
  grey_diff:       g_t = 0.299 x_t^R + 0.587 x_t^G + 0.114 x_t^B        (B, 1, T, H, W)
                   D_t = g_t - g_{t-1} for t >= 1,  D_0 = D_1            (B, 1, T, H, W)
  grey_diff_first: [D_t ; g_t - g_0]                                   (B, 2, T, H, W)
  grey_pair_diff:  P_k = g_{2k+1} - g_{2k}, k < T/2                    (B, 1, T/2, H, W)

  clip_norm (any mode): each channel c of X divided by max(RMS_c, floor), the RMS over the
                   clip's T, H, W                                      (shape unchanged)

grey_diff is a departure from the paper (docs/model.md): a difference of frames carries what
moves and cancels what stands still (the person's clothes, the room), which is what generalises
to people a small training set never showed. It is taken on the normalised clip inside the model,
so every caller (trainer, evaluator, predictor, app) feeds the same RGB clips and the checkpoint
alone says which input its stem was trained on. Per-channel normalisation offsets cancel in the
difference; the three channels' std (0.217-0.228 for Kinetics) scale the result almost equally.

grey_diff_first adds each frame's difference to the clip's first frame: once a held pose is
reached (half of the gesture classes are held poses) D_t falls to noise, while g_t - g_0 keeps
showing where the limbs are now against where they started, still without what stands still.

grey_pair_diff reads the clip as pairs of consecutive source frames (ClipConfig sampling
"segment_pairs"): each P_k is the motion over one source frame at segment k, so the network's
time axis has T/2 steps. Differences of frames a segment apart (grey_diff on segment samples,
0.1-0.3 s) alias a hand waving at 2-3 Hz; a pair's difference shows where it moves and which way.

clip_norm makes the stem's input independent of how fast a person moves between sampled frames
and of how much their clothes contrast with the room (S8, filmed at 15 fps in shorter clips, shows
differences of about half the others' size). The floor keeps a clip where nothing moves from
having its sensor noise scaled up to the size of a gesture.
"""
from __future__ import annotations

import torch
from torch import nn

INPUT_MODES = ("rgb", "grey_diff", "grey_diff_first", "grey_pair_diff")
# RMS below which clip_norm stops scaling up: about one grey level of 255 in normalised units.
CLIP_NORM_FLOOR = 0.02
_DESCRIPTIONS = {
    "rgb": "RGB",
    "grey_diff": "grey frame differences computed inside the model",
    "grey_diff_first": "grey frame differences and each frame's difference to the first, computed inside the model",
    "grey_pair_diff": "grey differences of consecutive frame pairs computed inside the model (half as many time steps)",
}
_LUMA = (0.299, 0.587, 0.114)


def describe_input(input_mode: str, clip_norm: bool = False) -> str:
    """What a model card and the app say the stem sees."""
    return _DESCRIPTIONS[input_mode] + (", each channel scaled to unit RMS per clip" if clip_norm else "")


def stem_channels(input_mode: str, in_channels: int) -> int:
    """Channels of the stem's input for a clip of `in_channels` channels."""
    return {"grey_diff": 1, "grey_diff_first": 2, "grey_pair_diff": 1}.get(input_mode, in_channels)


class ClipInput(nn.Module):
    def __init__(self, input_mode: str, clip_norm: bool = False) -> None:
        super().__init__()
        self.clip_norm = clip_norm
        if input_mode not in INPUT_MODES:
            raise ValueError(f"input_mode must be one of {INPUT_MODES}, got {input_mode!r}")
        self.input_mode = input_mode
        self.register_buffer("luma", torch.tensor(_LUMA).view(1, 3, 1, 1, 1), persistent=False)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        x = self.stem_input(clip)
        if not self.clip_norm:
            return x
        rms = x.square().mean(dim=(2, 3, 4), keepdim=True).sqrt()  # (B, C, 1, 1, 1)
        return x / rms.clamp_min(CLIP_NORM_FLOOR)

    def stem_input(self, clip: torch.Tensor) -> torch.Tensor:
        if self.input_mode == "rgb":
            return clip
        grey = (clip * self.luma.to(clip.dtype)).sum(1, keepdim=True)  # (B, 1, T, H, W)
        if self.input_mode == "grey_pair_diff":
            if grey.shape[2] % 2:
                raise ValueError(f"input_mode 'grey_pair_diff' reads frame pairs: the clip needs an even number "
                                 f"of frames, got {grey.shape[2]}")
            return grey[:, :, 1::2] - grey[:, :, 0::2]  # (B, 1, T/2, H, W)
        if grey.shape[2] < 2:
            return grey.new_zeros(grey.shape[0], stem_channels(self.input_mode, 3), *grey.shape[2:])
        diff = grey[:, :, 1:] - grey[:, :, :-1]  # (B, 1, T-1, H, W)
        diff = torch.cat([diff[:, :, :1], diff], dim=2)  # (B, 1, T, H, W): D_0 = D_1
        if self.input_mode == "grey_diff":
            return diff
        return torch.cat([diff, grey - grey[:, :, :1]], dim=1)  # (B, 2, T, H, W)

    def extra_repr(self) -> str:
        return self.input_mode + (", clip_norm" if self.clip_norm else "")
