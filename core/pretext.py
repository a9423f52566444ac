"""Self-supervised warm-up on the training clips themselves: the arrow of time.

For a run's first `TrainConfig.pretext_epochs` epochs the dataset's labels are not used. Each
clip is played backwards with probability 1/2, and a 2-way linear head on the classifier's input
(eq. 8's fused feature) learns which way it runs (Wei et al., "Learning and Using the Arrow of
Time", CVPR 2018). Telling a gesture from its reversal needs what the gesture classes need - where
a limb goes, whether a pose is reached or left - and no label. The loss is eq. 9 with that head's
cross-entropy in place of the classifier's: the diversity losses shape the attention as usual.

The head lives beside the model, never in it: checkpoints keep the model's layout, and a resumed
run restores the head from its training state. A departure from the paper (docs/model.md).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .model import STMANetConfig
from .model.losses import LossTerms, stmanet_loss

DIRECTIONS = ("forward", "backward")


class ArrowOfTime:
    def __init__(self, feature_dim: int, device: torch.device, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed + 0x4172)
        self.head = nn.Linear(feature_dim, len(DIRECTIONS))
        with torch.no_grad():  # its own stream: the model's init and dropout draws stay as without it
            self.head.weight.normal_(0.0, 0.01, generator=generator)
            self.head.bias.zero_()
        self.head.to(device)
        self.seed = seed

    def batch(self, clips: torch.Tensor, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(clips with about half played backwards, 1 where it was). Drawn from (seed, epoch, step)
        alone, so a resumed run reverses the same clips as the uninterrupted one did."""
        rng = np.random.default_rng((self.seed, epoch, step, 0x4172))
        backward = torch.from_numpy(rng.random(len(clips)) < 0.5).to(clips.device)
        clips = torch.where(backward.view(-1, 1, 1, 1, 1), clips.flip(2), clips)  # (B, C, T, H, W), T reversed
        return clips, backward.long()

    def loss(self, out, backward: torch.Tensor, model_cfg: STMANetConfig,
             diversity_weight: float) -> tuple[LossTerms, torch.Tensor]:
        """(eq. 9 with the direction head's cross-entropy, its logits (B, 2))."""
        logits = self.head(out.features)  # (B, 2)
        terms = stmanet_loss(dataclasses.replace(out, logits=logits, stage_logits=None), backward, model_cfg,
                             diversity_weight=diversity_weight)
        return terms, logits

    def average_gradients(self, world: int) -> None:
        """The head sits outside DistributedDataParallel: average its gradients as DDP does."""
        if world <= 1:
            return
        for p in self.head.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= world
