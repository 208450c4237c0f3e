"""Checks every export runs on its own file: parity with the PyTorch weights, mAP, latency.

- :func:`parity_image`: the image parity runs on: the first validation (else training) image of ``data=``, or a
  deterministic synthetic picture (grey background, filled shapes, a gradient) when no dataset is given;
  letterboxed, or for a classifier (``task="classify"``) resized, centre-cropped and normalised as it predicts.
- :func:`compare_outputs`: max abs difference of boxes (input pixels) and scores between the exported file's
  output and the PyTorch model's, for the three output kinds: ``(B, 4+nc, A)`` raw head output, ``(B, K, 6)``
  final rows (NMS-free head, embedded NMS), compared row by row after ordering by score.
- :func:`evaluate_backend`: mAP50-95 / mAP50 of a backend on the val split, quietly (no files kept); a
  classifier's top-1 / top-5.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["parity_image", "compare_outputs", "evaluate_backend", "quiet_logs", "TOLERANCES"]

# Largest allowed max-abs differences (boxes in pixels per 640 px of input side, scores absolute) per precision.
TOLERANCES = {"fp32": {"box_px_per_640": 0.05, "score": 1e-3}, "fp16": {"box_px_per_640": 3.0, "score": 0.02}}
_MARGIN = 2e-3  # final rows within this of the score threshold may differ between engines (borderline boxes)


@contextlib.contextmanager
def quiet_logs(*names: str) -> Iterator[None]:
    """Raise the given loggers to WARNING for the block (validation tables, label-cache lines), then restore."""
    loggers = [logging.getLogger(name) for name in names or ("yolokit.eval", "yolokit.data")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _synthetic_image(size: int = 320) -> np.ndarray:
    """A deterministic BGR test picture: gradient background with a rectangle, an ellipse and a triangle."""
    import cv2

    y, x = np.mgrid[0:size, 0:size]
    image = np.stack([(x * 255 // size), (y * 255 // size), np.full_like(x, 120)], 2).astype(np.uint8)
    cv2.rectangle(image, (size // 10, size // 8), (size // 2, size // 2), (30, 200, 240), -1)
    cv2.ellipse(image, (int(size * 0.7), int(size * 0.3)), (size // 6, size // 9), 20, 0, 360, (220, 40, 40), -1)
    triangle = np.array([[size // 2, int(size * 0.6)], [int(size * 0.85), int(size * 0.92)],
                         [int(size * 0.2), int(size * 0.95)]], np.int32)
    cv2.fillPoly(image, [triangle], (40, 220, 60))
    return image


def _classify_image(data: str) -> tuple[Any, str] | tuple[None, str]:
    """The first val (else train) image of a class-folder dataset, BGR, and its path."""
    from yolokit.data.classify import load_classify_data, scan_split
    from yolokit.data.sources import read_image

    classify = load_classify_data(data)
    split = "val" if "val" in classify.splits else "train"
    files = sorted(path for path, _ in scan_split(classify, split))
    return (read_image(files[0]), files[0]) if files else (None, "synthetic shapes image")


def parity_image(data: str | None, shape_hw: tuple[int, int], stride: int, *, task: str = "detect",
                 metadata: dict[str, Any] | None = None) -> tuple[torch.Tensor, str]:
    """``((1, 3, H, W) float32 input prepared as inference does, description)``: letterboxed, or for
    ``task="classify"`` through the classifier's eval crop and the normalisation ``metadata`` records."""
    from yolokit.data.transforms import letterbox, to_input_tensor

    image, name = None, "synthetic shapes image"
    if task == "classify":
        from yolokit.predict.classify import classify_preprocess

        image, name = _classify_image(data) if data else (None, name)
        image = _synthetic_image(max(shape_hw)) if image is None else image
        return classify_preprocess([image], shape_hw, metadata), name
    if data:
        from yolokit.data.dataset import load_data_config
        from yolokit.data.sources import read_image

        splits = load_data_config(data).splits
        files = splits.get("val") or splits.get("train") or []
        if files:
            image, name = read_image(str(files[0])), str(files[0])
    if image is None:
        image = _synthetic_image(max(shape_hw))
    padded, _, _ = letterbox(image, shape_hw, auto=False, stride=stride)
    return to_input_tensor([padded]), name


def _rows_diff(got: np.ndarray, ref: np.ndarray, conf: float) -> dict[str, float]:
    """Final rows ``(K, 6)`` of one image: rows above ``conf + margin``, ordered by score, compared one to one."""
    got = got[got[:, 4] > conf + _MARGIN]
    ref = ref[ref[:, 4] > conf + _MARGIN]
    if len(got) != len(ref):
        return {"box": float("inf"), "score": float("inf"), "rows": float(abs(len(got) - len(ref)))}
    if len(got) == 0:
        return {"box": 0.0, "score": 0.0, "rows": 0.0}
    got, ref = got[np.argsort(-got[:, 4], kind="stable")], ref[np.argsort(-ref[:, 4], kind="stable")]
    same_class = bool((got[:, 5] == ref[:, 5]).all())
    return {"box": float(np.abs(got[:, :4] - ref[:, :4]).max()) if same_class else float("inf"),
            "score": float(np.abs(got[:, 4] - ref[:, 4]).max()), "rows": 0.0}


def compare_outputs(got: Any, ref: Any, *, final: bool, conf: float = 0.0) -> dict[str, float]:
    """``{"box": max abs px, "score": max abs}`` between two outputs of the same kind (module docstring)."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if got.ndim == 2 and got.shape == ref.shape:  # a classifier's (B, nc) probabilities: scores only
        return {"box": 0.0, "score": float(np.abs(got - ref).max())}
    if not final:
        if got.shape != ref.shape:
            return {"box": float("inf"), "score": float("inf")}
        return {"box": float(np.abs(got[:, :4] - ref[:, :4]).max()),
                "score": float(np.abs(got[:, 4:] - ref[:, 4:]).max())}
    diffs = [_rows_diff(g, r, conf) for g, r in zip(got, ref, strict=True)]
    return {"box": max(d["box"] for d in diffs), "score": max(d["score"] for d in diffs),
            "rows_mismatched": sum(d["rows"] for d in diffs)}


def evaluate_backend(backend: Any, data: str, imgsz: int, nms: bool = True, rect: bool = True, *,
                     task: str = "detect", iou: float | None = None) -> tuple[float, float]:
    """(mAP50-95, mAP50) of ``backend`` on ``data``'s val split at ``imgsz`` (files go to a temporary folder;
    ``rect=False``: square batches, as a fixed-size graph gets; ``iou``: the NMS IoU, default ``ValConfig``'s).
    ``task="classify"``: (top-1, top-5) of the classifier on the split ``validate_classifier`` picks."""
    from yolokit.config import ValConfig, make_config

    if task == "classify":
        from yolokit.eval.classify import validate_classifier

        config = make_config(ValConfig, data=str(data), imgsz=int(imgsz), batch=8, verbose=False, plots=False)
        with tempfile.TemporaryDirectory(prefix="yolokit-export-val-") as folder, quiet_logs():
            top = validate_classifier(backend, config, save_dir=Path(folder))
        return float(top.top1), float(top.top5)
    from yolokit.eval.validator import validate

    extra = {} if iou is None else {"iou": float(iou)}
    config = make_config(ValConfig, data=str(data), imgsz=int(imgsz), batch=8, nms=nms, rect=rect, verbose=False,
                         plots=False, save_json=False, **extra)
    with tempfile.TemporaryDirectory(prefix="yolokit-export-val-") as folder, quiet_logs():
        metrics = validate(backend, config, save_dir=Path(folder))
    return float(metrics.map), float(metrics.map50)
