"""Training artefacts: ``results.csv`` (one row per epoch), ``results.png``, ``labels.jpg``-style label statistics
and ``train_batch*.jpg`` mosaics.

    write_results_row(run / "results.csv", {"epoch": 1, "time": 12.3, "train/box_loss": 1.9, ...})
    plot_results(run / "results.csv", run / "results.png")
    plot_labels(dataset.labels, names, run / "labels.png")
    plot_train_batch(batch, names, run / "train_batch0.jpg")

matplotlib is imported inside the functions and used through ``matplotlib.figure.Figure`` (Agg rendering, no pyplot,
no global backend switch); cv2 likewise. Every file is written atomically (whole file to a temporary, then renamed),
and only by the main process (the others return None and write nothing).
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from yolokit.errors import ConfigError
from yolokit.utils.dist import is_main_process
from yolokit.utils.io import atomic_write_bytes, atomic_write_text

__all__ = ["plot_labels", "plot_results", "plot_train_batch", "read_results", "write_results_row"]

LOGGER = logging.getLogger(__name__)
DPI = 100
RESULTS_COLS = 5  # subplots per row of results.png
RESULTS_SUBPLOT_IN = (3.0, 2.5)  # width, height in inches of one subplot: results.png is 300 x 250 px per subplot
LABELS_FIGSIZE_IN = (15.0, 5.0)  # labels.png: 1500 x 500 px (class histogram, box centres, box sizes)
MAX_SCATTER_POINTS = 50_000


def _format(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if hasattr(value, "item"):  # a 0-d tensor / numpy scalar
        return _format(value.item())
    return str(value)


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if row]
    return (rows[0], rows[1:]) if rows else ([], [])


def write_results_row(csv_path: str | Path, row: Mapping[str, Any]) -> Path | None:
    """Append one epoch's row to ``results.csv`` (header written with the first row); atomic, main process only.

    ``row`` maps column -> value, e.g. ``{"epoch": 3, "time": 41.2, "train/box_loss": 1.52, "train/cls_loss": 2.1,
    "train/dfl_loss": 1.3, "metrics/precision(B)": 0.41, "metrics/recall(B)": 0.33, "metrics/mAP50(B)": 0.30,
    "metrics/mAP50-95(B)": 0.17, "val/box_loss": ..., "lr/pg0": 0.0098, ...}`` (the reference's column names).
    Floats are written with 6 significant digits. On resume the file is kept and rows are appended under the same
    header; rows whose ``epoch`` is >= the new row's ``epoch`` are dropped first (a run killed after writing its
    row but before saving its state replays that epoch without duplicating it).

    Raises:
        ConfigError: the file's header has other columns than ``row`` (a different run), or ``row`` is empty.
    """
    if not row:
        raise ConfigError("write_results_row: expected a non-empty row {column: value}, found an empty one")
    if not is_main_process():
        return None
    path = Path(csv_path)
    columns = list(row)
    header, rows = _read_rows(path) if path.is_file() else ([], [])
    if header and sorted(header) != sorted(columns):
        raise ConfigError(
            f"{path}: its header has columns {header} but the new row has {columns}; resume with the settings "
            "of that run, or train into a new run directory")
    header = header or columns
    if "epoch" in header and "epoch" in row:
        position = header.index("epoch")
        rows = [r for r in rows if _as_float(r[position]) < float(row["epoch"])]
    rows.append([_format(row[column]) for column in header])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def _as_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def read_results(csv_path: str | Path) -> dict[str, list[float]]:
    """``results.csv`` -> ``{column: [value per row]}`` (floats; a non-numeric cell is nan), header order kept."""
    header, rows = _read_rows(Path(csv_path))
    return {name: [_as_float(row[i]) if i < len(row) else math.nan for row in rows] for i, name in enumerate(header)}


def _new_figure(size: tuple[float, float]) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=size, dpi=DPI, layout="constrained")


def _save_png(fig: Any, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return atomic_write_bytes(path, buffer.getvalue())


def plot_results(csv_path: str | Path, out_png: str | Path) -> Path | None:
    """One subplot per column of ``results.csv`` (losses, P, R, mAP50, mAP50-95, lr, time) against ``epoch``.

    ``RESULTS_COLS`` subplots per row, each 300 x 250 px: 7 value columns give a 1500 x 500 px PNG.
    Returns the path, or None off the main process or when the file has no rows.
    """
    if not is_main_process():
        return None
    results = read_results(csv_path)
    x_values = results.pop("epoch", None)
    if not results or not next(iter(results.values())):
        LOGGER.warning("%s has no rows: results plot not written", csv_path)
        return None
    count = len(results)
    cols = min(RESULTS_COLS, count)
    rows = math.ceil(count / cols)
    fig = _new_figure((RESULTS_SUBPLOT_IN[0] * cols, RESULTS_SUBPLOT_IN[1] * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (name, values) in zip(axes, results.items(), strict=False):
        x = x_values if x_values is not None else list(range(1, len(values) + 1))
        ax.plot(x, values, marker=".", markersize=5, linewidth=1.5, color="tab:blue")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[count:]:
        ax.set_axis_off()
    return _save_png(fig, Path(out_png))


def _gather_labels(labels: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """ImageLabels (``.cls`` (n,), ``.bboxes`` (n, 4)) or arrays (n, 5) ``[cls, cx, cy, w, h]`` -> (N,), (N, 4)."""
    classes, boxes = [np.zeros(0)], [np.zeros((0, 4))]
    for item in labels:
        if hasattr(item, "cls") and hasattr(item, "bboxes"):
            classes.append(np.asarray(item.cls).reshape(-1))
            boxes.append(np.asarray(item.bboxes, dtype=np.float64).reshape(-1, 4))
            continue
        array = np.asarray(item, dtype=np.float64)
        if array.size and (array.ndim != 2 or array.shape[1] != 5):
            raise ConfigError(f"plot_labels: expected (n, 5) arrays [cls, cx, cy, w, h], found shape {array.shape}")
        array = array.reshape(-1, 5)
        classes.append(array[:, 0])
        boxes.append(array[:, 1:])
    return np.concatenate(classes).astype(np.int64), np.concatenate(boxes)


def _rgb(class_ids: np.ndarray) -> np.ndarray:
    from yolokit.predict.draw import colors

    palette = np.array([colors(i)[::-1] for i in range(20)], dtype=np.float64) / 255.0  # BGR -> RGB in [0, 1]
    return palette[class_ids % 20]


def plot_labels(labels: Sequence[Any], names: Mapping[int, str], out_png: str | Path) -> Path | None:
    """Label statistics of a dataset: instances per class, box centres (cx, cy) and box sizes (w, h), normalised.

    ``labels``: a list of ``ImageLabels`` or of ``(n, 5)`` arrays ``[cls, cx, cy, w, h]``. A 1500 x 500 px PNG.
    """
    if not is_main_process():
        return None
    classes, boxes = _gather_labels(labels)
    ids = sorted(names)
    fig = _new_figure(LABELS_FIGSIZE_IN)
    hist, centres, sizes = fig.subplots(1, 3)
    counts = np.bincount(classes, minlength=max(ids, default=-1) + 1)[: len(ids)] if len(ids) else []
    hist.bar(range(len(ids)), counts, color=_rgb(np.array(ids, dtype=np.int64)))
    if len(ids) <= 30:
        hist.set_xticks(range(len(ids)), [str(names[i]) for i in ids], rotation=90 if len(ids) > 8 else 0)
    hist.set_ylabel("instances")
    hist.set_title(f"{len(classes)} instances, {len(ids)} classes")
    step = max(1, math.ceil(len(classes) / MAX_SCATTER_POINTS))
    shown, colour = boxes[::step], _rgb(classes[::step])
    marker = 12 if len(shown) < 2000 else 3
    centres.scatter(shown[:, 0], shown[:, 1], s=marker, c=colour, alpha=0.6, linewidths=0)
    centres.set(xlim=(0, 1), ylim=(1, 0), xlabel="x", ylabel="y", title="box centres", aspect="equal")
    sizes.scatter(shown[:, 2], shown[:, 3], s=marker, c=colour, alpha=0.6, linewidths=0)
    sizes.set(xlim=(0, 1), ylim=(0, 1), xlabel="width", ylabel="height", title="box sizes", aspect="equal")
    return _save_png(fig, Path(out_png))


def _batch_images(images: Any, count: int) -> list[np.ndarray]:
    """``(B, 3, H, W)`` RGB uint8 (or float in [0, 1]) tensor/array -> ``count`` BGR ``(H, W, 3)`` uint8 arrays."""
    array = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    array = array[:count]
    if array.dtype != np.uint8:
        array = np.clip(array * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return [np.ascontiguousarray(image.transpose(1, 2, 0)[:, :, ::-1]) for image in array]


def _numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def plot_train_batch(batch: Mapping[str, Any], names: Mapping[int, str], out_jpg: str | Path,
                     max_images: int = 16) -> Path | None:
    """A JPEG mosaic of the first ``max_images`` (at most 16) images of a training batch with their boxes and class
    names drawn (the batch contract of ``yolokit.data.loader``: ``img`` (B, 3, H, W) RGB uint8, ``cls`` (N, 1),
    ``bboxes`` (N, 4) cxcywh normalised, ``batch_idx`` (N,), ``im_file``)."""
    if not is_main_process():
        return None
    from yolokit.eval.plots import plot_image_mosaic

    images = _batch_images(batch["img"], max(1, int(max_images)))
    classes = _numpy(batch["cls"]).reshape(-1).astype(np.int64)
    boxes = _numpy(batch["bboxes"]).reshape(-1, 4).astype(np.float64)
    owner = _numpy(batch["batch_idx"]).reshape(-1).astype(np.int64)
    per_boxes, per_classes = [], []
    for i, image in enumerate(images):
        height, width = image.shape[:2]
        cxcywh = boxes[owner == i] * (width, height, width, height)
        xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1)
        per_boxes.append(xyxy)
        per_classes.append(classes[owner == i])
    files = batch.get("im_file")
    titles = [Path(str(f)).name for f in files[: len(images)]] if files is not None else None
    return plot_image_mosaic(images, per_boxes, per_classes, None, dict(names), out_jpg, titles=titles)
