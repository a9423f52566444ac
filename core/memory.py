"""How much memory a training run needs, known before it starts.

    estimate = activations saved for backward (counted on the meta device: exact for this model,
               clip and batch, with no memory and no time spent)
             + weights, their gradients and the optimizer's state (AdamW: 2 per weight, SGD: 1)
             + the input batch (uint8 frames become fp32 clips)
    (the activations and the input batch) times TRANSIENT, for what lives only during backward (the
    gradient of each activation while its layer runs) and the allocator's slack, plus OVERHEAD
    for oneDNN's primitive caches and the allocator's arenas. Measured on CPU (fp32, one thread):
    real two-step peak resident growth / estimate was 0.67-0.86 for ST-MANet-18 (16x64x64 batch
    16, 32x112x112 batch 4), its backbone and ST-MANet-50; tests/test_memory.py checks a real step
    stays below the estimate and above a third of it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import STMANetConfig, build_model, stmanet_loss

TRANSIENT = 2.0
OVERHEAD = 64 * 2**20


@dataclass(frozen=True)
class MemoryEstimate:
    activations: int  # bytes saved for backward
    parameters: int  # weights + gradients + optimizer state
    inputs: int
    total: int  # what a run is checked against

    def describe(self) -> str:
        return (f"about {self.total / 2**30:.1f} GiB (activations {self.activations / 2**30:.2f} GiB, weights, "
                f"gradients and optimizer state {self.parameters / 2**30:.2f} GiB, input batch "
                f"{self.inputs / 2**30:.2f} GiB)")


def saved_activation_bytes(model_cfg: STMANetConfig, batch: int, num_frames: int, height: int, width: int) -> int:
    """Bytes of the tensors one training forward (and eq. 9's loss) saves for backward, counted on
    the meta device; each storage once (views of one tensor, or a tensor several ops save)."""
    with torch.device("meta"):
        model = build_model(model_cfg).train()
        clip = torch.empty(batch, 3, num_frames, height, width)
        labels = torch.zeros(batch, dtype=torch.long)
    weights = {p._cdata for p in model.parameters()}
    seen: dict[int, int] = {}  # tensor -> bytes: a tensor several ops save counts once

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t._cdata not in weights:  # weights are counted with the parameters
            seen[t._cdata] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        stmanet_loss(model(clip), labels, model_cfg)
    return sum(seen.values())


def training_memory(model_cfg: STMANetConfig, batch: int, num_frames: int, height: int, width: int,
                    optimizer: str = "adamw") -> MemoryEstimate:
    activations = saved_activation_bytes(model_cfg, batch, num_frames, height, width)
    with torch.device("meta"):
        weights = sum(p.numel() for p in build_model(model_cfg).parameters()) * 4
    states = 2 if optimizer == "adamw" else 1
    parameters = weights * (2 + states)
    inputs = batch * 3 * num_frames * height * width * (4 + 1)
    return MemoryEstimate(activations, parameters, inputs,
                          int(TRANSIENT * (activations + inputs)) + parameters + OVERHEAD)
