"""Exponential moving average of a model's weights (Polyak averaging), a training option.

After the n-th optimizer step of the labelled phase:

  w_avg <- d_n w_avg + (1 - d_n) w,    d_n = min(decay, (1 + n) / (10 + n))

for every floating-point entry of the state dict (parameters and BN running statistics; integer
counters are copied). The ramp (1 + n) / (10 + n) keeps the first steps from being dominated by
the initial weights. What a run validates and what its checkpoints hold are the averaged
weights; the live weights the optimizer keeps training are saved in the run's training state so
that a resume continues both exactly. A small data set gives accuracy that swings by several
points from epoch to epoch; the average is one model that smooths those swings.
"""
from __future__ import annotations

import contextlib

import torch


class WeightAverage:
    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"weight average decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.averaged = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def reset(self, model: torch.nn.Module) -> None:
        """Start again from the model's current weights (when the labelled phase begins)."""
        self.updates = 0
        self.averaged = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, value in model.state_dict().items():
            average = self.averaged[name]
            if average.is_floating_point():
                average.mul_(d).add_(value.detach(), alpha=1 - d)
            else:
                average.copy_(value)

    @contextlib.contextmanager
    def swapped_in(self, model: torch.nn.Module):
        """The model holds the averaged weights inside the block and its live ones after it."""
        live = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.averaged)
        try:
            yield model
        finally:
            model.load_state_dict(live)
