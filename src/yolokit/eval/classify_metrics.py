"""Classification metrics: top-1 / top-5 accuracy, per-class accuracy, confusion matrix.

:class:`ClassifyEvaluator` follows ``reset / update / compute``: ``update(probs (B, nc), targets (B,))`` with any
scores whose order ranks the classes (probabilities or logits). Definitions (the reference's):

- top-1 = share of images whose highest-scoring class is the true one;
- top-5 = share whose true class is among the ``min(5, nc)`` highest;
- per-class accuracy = top-1 restricted to the images of that true class (its recall);
- ``confusion[p, t]`` counts images of true class ``t`` predicted (top-1) as ``p`` (rows predicted, columns true, as
  for detection, without a background row);
- fitness (model selection while training) = ``(top1 + top5) / 2``.

Worked example: ``nc = 3``, scores ``[[.7, .2, .1], [.1, .3, .6]]``, targets ``[0, 1]`` -> top-1 0.5 (second image
ranks class 2 first), top-5 1.0 (every class is within the top 3), per-class accuracy ``{0: 1.0, 1: 0.0, 2: None}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolokit.utils.io import atomic_write_json

__all__ = ["ClassifyMetrics", "ClassifyEvaluator"]


@dataclass
class ClassifyMetrics:
    """Validation result of a classifier (fractions in [0, 1]; ``speed`` in ms per image)."""

    names: dict[int, str]
    top1: float = 0.0
    top5: float = 0.0
    num_images: int = 0
    per_class: list[dict[str, Any]] = field(default_factory=list)  # {class, name, images, correct, accuracy}
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    speed: dict[str, float] = field(default_factory=dict)

    @property
    def fitness(self) -> float:
        """Model selection score: the mean of top-1 and top-5 (the reference's rule for classifiers)."""
        return (self.top1 + self.top5) / 2

    @property
    def per_class_accuracy(self) -> dict[int, float | None]:
        """Class id -> accuracy on its images (None for a class without images)."""
        return {row["class"]: row["accuracy"] for row in self.per_class}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict: summary numbers, per-class rows, confusion matrix, names, speed."""
        return {"metrics": {"top1": float(self.top1), "top5": float(self.top5), "fitness": float(self.fitness)},
                "num_images": int(self.num_images), "per_class": [dict(row) for row in self.per_class],
                "confusion": np.asarray(self.confusion).tolist(), "names": {str(k): v for k, v in self.names.items()},
                "speed": dict(self.speed)}

    def save_json(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write :meth:`to_dict` (plus ``extra`` keys such as the config) to ``path`` atomically."""
        return atomic_write_json(path, {**self.to_dict(), **(extra or {})})

    def format_table(self, classes: bool = True) -> str:
        """Aligned text table: an ``all`` row (top-1, top-5), then (``classes``) per-class accuracy rows."""
        width = max([len("Class"), 14] + [len(str(n)) + 2 for n in self.names.values()])
        rows = [f"{'Class':>{width}}{'Images':>11}{'top1_acc':>11}{'top5_acc':>11}",
                f"{'all':>{width}}{self.num_images:>11}{self.top1:>11.3f}{self.top5:>11.3f}"]
        for row in self.per_class if classes else []:
            if row["images"]:
                rows.append(f"{row['name']:>{width}}{row['images']:>11}{row['accuracy']:>11.3f}{'':>11}")
        return "\n".join(rows)


class ClassifyEvaluator:
    """Accumulates scores and true classes of a split; :meth:`compute` gives :class:`ClassifyMetrics`."""

    def __init__(self, names: dict[int, str]) -> None:
        self.names = dict(names)
        self.nc = len(self.names)
        self.reset()

    def reset(self) -> None:
        self._topk: list[torch.Tensor] = []  # (B, k) class ids, best first
        self._targets: list[torch.Tensor] = []

    def update(self, scores: torch.Tensor, targets: torch.Tensor) -> None:
        """``scores (B, nc)`` (probabilities or logits), ``targets (B,)`` true class ids."""
        if scores.ndim != 2 or scores.shape[1] != self.nc:
            raise ValueError(f"ClassifyEvaluator: expected scores (B, {self.nc}), got {tuple(scores.shape)}")
        targets = torch.as_tensor(targets).reshape(-1).long().cpu()
        if targets.numel() != scores.shape[0]:
            raise ValueError(f"ClassifyEvaluator: {scores.shape[0]} score rows but {targets.numel()} targets")
        k = min(5, self.nc)
        self._topk.append(torch.topk(scores.detach().float().cpu(), k, dim=1).indices)
        self._targets.append(targets)

    def compute(self) -> ClassifyMetrics:
        if not self._targets:
            return ClassifyMetrics(self.names, confusion=np.zeros((self.nc, self.nc), np.int64))
        topk, targets = torch.cat(self._topk), torch.cat(self._targets)
        hits = topk == targets[:, None]  # (N, k)
        top1_hits = hits[:, 0].numpy()
        preds, truth = topk[:, 0].numpy(), targets.numpy()
        confusion = np.zeros((self.nc, self.nc), np.int64)
        np.add.at(confusion, (preds, truth), 1)
        per_class = []
        for class_id in sorted(self.names):
            mask = truth == class_id
            count, correct = int(mask.sum()), int(top1_hits[mask].sum())
            per_class.append({"class": int(class_id), "name": self.names[class_id], "images": count,
                              "correct": correct, "accuracy": correct / count if count else None})
        return ClassifyMetrics(self.names, top1=float(top1_hits.mean()), top5=float(hits.any(1).float().mean()),
                               num_images=len(truth), per_class=per_class, confusion=confusion)
