"""Classification plots: the (nc, nc) confusion matrix heat map (rows predicted, columns true; no background) and
the class histogram of a training set."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from yolokit.eval.plots import _new_figure, _save_figure
from yolokit.utils.dist import is_main_process

__all__ = ["plot_class_confusion", "plot_class_counts"]


def plot_class_confusion(matrix: np.ndarray, names: dict[int, str], path: str | Path,
                         normalize: bool = False) -> Path | None:
    """Heat map of ``matrix[p, t]`` (images of true class ``t`` predicted as ``p``) saved as PNG (main process).

    ``normalize`` divides every column by its sum (the share of each true class that went to each prediction).
    Class names label the axes up to 40 classes; cell values are written up to 30.
    """
    if not is_main_process():
        return None
    matrix = np.asarray(matrix, dtype=np.float64)
    if normalize:
        matrix = matrix / np.maximum(matrix.sum(axis=0, keepdims=True), 1e-9)
    labels = [str(names[k]) for k in sorted(names)]
    size = len(labels)
    fig = _new_figure((max(5.0, 0.45 * size + 3), max(4.0, 0.45 * size + 2.5)))
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues", vmin=0.0, aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = labels if size <= 40 else []
    ax.set_xticks(range(size) if ticks else [], ticks, rotation=90 if size > 10 else 0)
    ax.set_yticks(range(size) if ticks else [], ticks)
    if size <= 30:
        peak = matrix.max() if matrix.size else 0.0
        for (row, col), value in np.ndenumerate(matrix):
            if value:
                ax.text(col, row, f"{value:.2f}" if normalize else f"{int(value)}", ha="center", va="center",
                        fontsize=7, color="white" if value > 0.5 * peak else "black")
    ax.set_xlabel("True")
    ax.set_ylabel("Predicted")
    ax.set_title("Confusion Matrix" + (" Normalized" if normalize else ""))
    return _save_figure(fig, Path(path))


def plot_class_counts(labels: Sequence[int], names: dict[int, str], path: str | Path) -> Path | None:
    """Bar chart of the number of images per class (a classification set's ``labels.png``), main process only."""
    if not is_main_process():
        return None
    counts = np.bincount(np.asarray(list(labels), dtype=np.int64), minlength=len(names))[: len(names)]
    fig = _new_figure((max(5.0, 0.3 * len(names) + 2), 4.0))
    ax = fig.add_subplot()
    ax.bar(range(len(names)), counts, color="#4363D8")
    if len(names) <= 40:
        ax.set_xticks(range(len(names)), [str(names[k]) for k in sorted(names)], rotation=90 if len(names) > 10 else 0)
    ax.set_ylabel("images")
    ax.set_title(f"{int(counts.sum())} images, {len(names)} classes")
    return _save_figure(fig, Path(path))
