"""Evaluation: the paper's test protocol and the numbers a reader of the paper asks for.

A video's score is the mean of its windows' softmax (paper 4.1). Reported: top-1, top-5, mean
class accuracy, per-class accuracy, the confusion matrix, the accuracy of each stage's own head
beside the fused head (the paper's Fig. 4), and the mean cosine similarity between the stages'
attention maps (what the diversity losses of eq. 7 push down).

    python -m core.evaluate --checkpoint DIR --data-layout list --list FILE --root DIR --json OUT.json
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from .model.losses import stage_similarity


def _single(batch):
    return batch[0]


@torch.inference_mode()
def evaluate_model(model, dataset, device, class_names: list[str], num_workers: int = 0,
                   with_diversity: bool = True, batch_windows: int = 8, progress: bool = False) -> dict:
    """Evaluate `model` on an eval-mode VideoClipDataset (items: windows (W,3,T,H,W), label)."""
    model.eval()
    device = torch.device(device)
    loader = DataLoader(dataset, batch_size=1, collate_fn=_single, num_workers=num_workers)
    k = len(class_names)
    fused, stages, labels = [], [], []
    sim_s, sim_t = [], []
    iterator = loader
    if progress:
        from tqdm import tqdm

        iterator = tqdm(loader, total=len(dataset), desc="evaluate", leave=False)
    for windows, label in iterator:
        probs, stage_probs = [], []
        for chunk in windows.split(batch_windows):
            out = model(chunk.to(device), return_attention=with_diversity)
            probs.append(out.logits.float().softmax(-1).cpu())
            if out.stage_logits is not None:
                stage_probs.append(torch.stack([s.float().softmax(-1).cpu() for s in out.stage_logits], 1))
            if with_diversity:
                s, t = stage_similarity(out)
                if s is not None:
                    sim_s.append(s.mean(0).cpu())
                if t is not None:
                    sim_t.append(t.mean(0).cpu())
        fused.append(torch.cat(probs).mean(0))
        if stage_probs:
            stages.append(torch.cat(stage_probs).mean(0))  # (4, K)
        labels.append(int(label))
    scores = torch.stack(fused).numpy() if fused else np.zeros((0, k))
    y = np.asarray(labels, dtype=int)
    metrics = classification_metrics(scores, y, class_names)
    metrics["stage_top1"] = (
        [float((torch.stack(stages)[:, i].argmax(-1).numpy() == y).mean()) for i in range(4)] if stages else []
    )
    for name, sims in (("spatial", sim_s), ("temporal", sim_t)):
        if sims:
            matrix = torch.stack(sims).mean(0)
            off_diagonal = matrix[~torch.eye(len(matrix), dtype=torch.bool)]
            metrics[f"diversity_{name}"] = float(off_diagonal.mean())
            metrics[f"similarity_{name}"] = matrix.tolist()
    metrics["videos"] = int(len(y))
    return metrics


def classification_metrics(scores: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    """top1, top5, mean_class_accuracy, per_class {name: acc}, confusion [[...]] (rows: truth)."""
    k = len(class_names)
    if len(labels) == 0:
        return {"top1": 0.0, "top5": 0.0, "mean_class_accuracy": 0.0, "per_class": {}, "confusion": [],
                "class_names": list(class_names)}
    predicted = scores.argmax(1)
    top5 = np.argsort(-scores, axis=1)[:, : min(5, k)]
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (labels, predicted), 1)
    support = confusion.sum(1)
    per_class = {name: float(confusion[i, i] / support[i]) for i, name in enumerate(class_names) if support[i]}
    return {
        "top1": float((predicted == labels).mean()),
        "top5": float((top5 == labels[:, None]).any(1).mean()),
        "mean_class_accuracy": float(np.mean(list(per_class.values()))),
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "class_names": list(class_names),
    }
