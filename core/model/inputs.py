"""What the stem sees: the clip as given (the paper), or its grey frame differences.

  rgb:        X = clip                                            (B, 3, T, H, W)
  grey_diff:  g_t = 0.299 x_t^R + 0.587 x_t^G + 0.114 x_t^B        (B, 1, T, H, W)
              D_t = g_t - g_{t-1} for t >= 1,  D_0 = D_1            (B, 1, T, H, W)

grey_diff is a departure from the paper (docs/model.md): a difference of frames carries what
moves and cancels what stands still (the person's clothes, the room), which is what generalises
to people a small training set never showed. It is taken on the normalised clip inside the model,
so every caller (trainer, evaluator, predictor, app) feeds the same RGB clips and the checkpoint
alone says which input its stem was trained on. Per-channel normalisation offsets cancel in the
difference; the three channels' std (0.217-0.228 for Kinetics) scale the result almost equally.
"""
from __future__ import annotations

import torch
from torch import nn

INPUT_MODES = ("rgb", "grey_diff")
_LUMA = (0.299, 0.587, 0.114)


def stem_channels(input_mode: str, in_channels: int) -> int:
    """Channels of the stem's input for a clip of `in_channels` channels."""
    return 1 if input_mode == "grey_diff" else in_channels


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
            return torch.zeros_like(grey)
        diff = grey[:, :, 1:] - grey[:, :, :-1]  # (B, 1, T-1, H, W)
        return torch.cat([diff[:, :, :1], diff], dim=2)  # (B, 1, T, H, W): D_0 = D_1

    def extra_repr(self) -> str:
        return self.input_mode
