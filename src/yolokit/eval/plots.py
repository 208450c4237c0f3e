"""Validation plots: confusion matrices, P/R/F1/PR curves and labelled image mosaics.

matplotlib is imported inside the functions and used through ``matplotlib.figure.Figure`` (Agg rendering, no
pyplot, no global backend switch). Every file is written atomically, and only by the main process.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from yolokit.utils.dist import is_main_process
from yolokit.utils.io import atomic_write_bytes

logger = logging.getLogger(__name__)

MOSAIC_MAX_IMAGES = 16
MOSAIC_MAX_SIDE = 1920
PLOT_PRED_CONF = 0.25  # predictions drawn on the val_batch*_pred.jpg mosaics


def _new_figure(size: tuple[float, float]) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained")


def _save_figure(fig: Any, path: Path, dpi: int = 150) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return atomic_write_bytes(path, buffer.getvalue())


def plot_confusion_matrix(matrix: np.ndarray, names: dict[int, str], path: str | Path,
                          normalize: bool = False) -> Path | None:
    """Heat map of the (nc+1, nc+1) matrix (rows predicted, columns true, last = background).

    ``normalize`` divides every column by its sum (the share of each true class that went to each prediction).
    """
    if not is_main_process():
        return None
    matrix = np.asarray(matrix, dtype=np.float64)
    if normalize:
        matrix = matrix / np.maximum(matrix.sum(axis=0, keepdims=True), 1e-9)
    labels = [names[k] for k in sorted(names)] + ["background"]
    size = len(labels)
    fig = _new_figure((max(6.0, 0.45 * size + 3), max(5.0, 0.45 * size + 2.5)))
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
                text = f"{value:.2f}" if normalize else f"{int(value)}"
                ax.text(col, row, text, ha="center", va="center", fontsize=7,
                        color="white" if value > 0.5 * peak else "black")
    ax.set_xlabel("True")
    ax.set_ylabel("Predicted")
    ax.set_title("Confusion Matrix" + (" Normalized" if normalize else ""))
    return _save_figure(fig, Path(path))


def plot_curve(x: np.ndarray, curves: np.ndarray, names: Sequence[str], path: str | Path, *, xlabel: str,
               ylabel: str, mean_label: str) -> Path | None:
    """Per-class curves (K, N) as thin lines (legend when K <= 20) and their mean as a bold line."""
    if not is_main_process():
        return None
    fig = _new_figure((9.0, 6.0))
    ax = fig.add_subplot()
    show_legend = len(names) <= 20
    for curve, name in zip(curves, names, strict=True):
        ax.plot(x, curve, linewidth=1, label=name if show_legend else None)
    if len(curves):
        ax.plot(x, curves.mean(axis=0), linewidth=3, color="blue", label=mean_label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.set_title(f"{ylabel}-{xlabel} Curve")
    return _save_figure(fig, Path(path))


def plot_metrics(metrics: Any, save_dir: str | Path) -> list[Path]:
    """Write confusion_matrix(_normalized).png, PR_curve.png, F1_curve.png, P_curve.png and R_curve.png."""
    if not is_main_process():
        return []
    save_dir = Path(save_dir)
    written = [plot_confusion_matrix(metrics.confusion, metrics.names, save_dir / "confusion_matrix.png"),
               plot_confusion_matrix(metrics.confusion, metrics.names, save_dir / "confusion_matrix_normalized.png",
                                     normalize=True)]
    curves = metrics.curves
    if curves:
        has_gt = curves["has_gt"]
        classes = sorted(metrics.names)
        rows = [row for row in metrics.per_class if row["instances"] > 0]
        labels = [f"{row['name']} {row['map50'] or 0:.3f}" for row in rows]
        grid = curves["grid"]
        written.append(plot_curve(grid, curves["pr"][has_gt], labels, save_dir / "PR_curve.png", xlabel="Recall",
                                  ylabel="Precision", mean_label=f"all classes {max(metrics.map50, 0):.3f} mAP@0.5"))
        names = [metrics.names[c] for c, keep in zip(classes, has_gt, strict=True) if keep]
        for key, file, ylabel, value in (("f1", "F1_curve.png", "F1", metrics.f1),
                                         ("precision", "P_curve.png", "Precision", metrics.precision),
                                         ("recall", "R_curve.png", "Recall", metrics.recall)):
            written.append(plot_curve(grid, curves[key][has_gt], names, save_dir / file, xlabel="Confidence",
                                      ylabel=ylabel,
                                      mean_label=f"all classes {value:.2f} at {metrics.conf_threshold:.3f}"))
    return [p for p in written if p is not None]


def plot_image_mosaic(images: Sequence[np.ndarray], boxes: Sequence[np.ndarray], classes: Sequence[np.ndarray],
                      confs: Sequence[np.ndarray] | None, names: dict[int, str], path: str | Path,
                      titles: Sequence[str] | None = None) -> Path | None:
    """Tile up to 16 BGR images (h, w, 3) with their xyxy pixel boxes drawn; save as JPEG.

    ``confs`` None draws names only (labels); otherwise boxes with confidence <= 0.25 are skipped.
    """
    if not is_main_process() or not len(images):
        return None
    import cv2

    from yolokit.predict.draw import draw_boxes

    count = min(len(images), MOSAIC_MAX_IMAGES)
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    tile_h = max(image.shape[0] for image in images[:count])
    tile_w = max(image.shape[1] for image in images[:count])
    scale = min(1.0, MOSAIC_MAX_SIDE / max(rows * tile_h, cols * tile_w))
    th, tw = max(1, round(tile_h * scale)), max(1, round(tile_w * scale))
    mosaic = np.full((rows * th, cols * tw, 3), 255, dtype=np.uint8)
    for i in range(count):
        tile = cv2.resize(images[i], (round(images[i].shape[1] * scale), round(images[i].shape[0] * scale)),
                          interpolation=cv2.INTER_AREA) if scale < 1 else images[i].copy()
        tile = np.ascontiguousarray(tile)
        keep = np.ones(len(boxes[i]), dtype=bool) if confs is None else np.asarray(confs[i]) > PLOT_PRED_CONF
        draw_boxes(tile, np.asarray(boxes[i], dtype=np.float64)[keep] * scale, np.asarray(classes[i])[keep],
                   None if confs is None else np.asarray(confs[i])[keep], names, line_width=max(1, round(2 * scale)))
        if titles is not None:
            cv2.putText(tile, str(titles[i])[:40], (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (220, 220, 220), 1,
                        cv2.LINE_AA)
        y, x = (i // cols) * th, (i % cols) * tw
        mosaic[y:y + tile.shape[0], x:x + tile.shape[1]] = tile[:th, :tw]
        cv2.rectangle(mosaic, (x, y), (x + tw - 1, y + th - 1), (255, 255, 255), 2)
    ok, encoded = cv2.imencode(".jpg", mosaic, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError(f"could not encode the mosaic {path}")
    return atomic_write_bytes(Path(path), encoded.tobytes())
