"""What the stem sees: the clip as given (the paper), or its grey frame differences.

  rgb:             X = clip                                            (B, 3, T, H, W)
  grey_diff:       g_t = 0.299 x_t^R + 0.587 x_t^G + 0.114 x_t^B        (B, 1, T, H, W)
                   D_t = g_t - g_{t-1} for t >= 1,  D_0 = D_1            (B, 1, T, H, W)
  grey_diff_first: [D_t ; g_t - g_0]                                   (B, 2, T, H, W)

grey_diff is a departure from the paper (docs/model.md): a difference of frames carries what
moves and cancels what stands still (the person's clothes, the room), which is what generalises
to people a small training set never showed. It is taken on the normalised clip inside the model,
so every caller (trainer, evaluator, predictor, app) feeds the same RGB clips and the checkpoint
alone says which input its stem was trained on.

grey_diff_first adds each frame's difference to the clip's first frame: once a held pose is
reached (half of the gesture classes are held poses) D_t falls to noise, while g_t - g_0 keeps
showing where the limbs are now against where they started, still without what stands still. Per-channel normalisation offsets cancel in the
difference; the three channels' std (0.217-0.228 for Kinetics) scale the result almost equally.
"""
from __future__ import annotations

import torch
from torch import nn

INPUT_MODES = ("rgb", "grey_diff", "grey_diff_first")
# What a model card and the app say the stem sees, per input mode.
INPUT_DESCRIPTIONS = {
    "rgb": "RGB",
    "grey_diff": "grey frame differences computed inside the model",
    "grey_diff_first": "grey frame differences and each frame's difference to the first, computed inside the model",
}
_LUMA = (0.299, 0.587, 0.114)


def stem_channels(input_mode: str, in_channels: int) -> int:
    """Channels of the stem's input for a clip of `in_channels` channels."""
    return {"grey_diff": 1, "grey_diff_first": 2}.get(input_mode, in_channels)


class ClipInput(nn.Module):
    def __init__(self, input_mode: str) -> None:
        super().__init__()
        if input_mode not in INPUT_MODES:
            raise ValueError(f"input_mode must be one of {INPUT_MODES}, got {input_mode!r}")
        self.input_mode = input_mode
        self.register_buffer("luma", torch.tensor(_LUMA).view(1, 3, 1, 1, 1), persistent=False)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        if self.input_mode == "rgb":
            return clip
        grey = (clip * self.luma.to(clip.dtype)).sum(1, keepdim=True)  # (B, 1, T, H, W)
        if grey.shape[2] < 2:
            return grey.new_zeros(grey.shape[0], stem_channels(self.input_mode, 3), *grey.shape[2:])
        diff = grey[:, :, 1:] - grey[:, :, :-1]  # (B, 1, T-1, H, W)
        diff = torch.cat([diff[:, :, :1], diff], dim=2)  # (B, 1, T, H, W): D_0 = D_1
        if self.input_mode == "grey_diff":
            return diff
        return torch.cat([diff, grey - grey[:, :, :1]], dim=1)  # (B, 2, T, H, W)

    def extra_repr(self) -> str:
        return self.input_mode
