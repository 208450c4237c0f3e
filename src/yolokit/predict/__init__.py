"""Inference: letterbox preprocessing, the predict loop, results and drawing (backends: :mod:`yolokit.backends`).

Public names are imported lazily (``from yolokit.predict import Predictor`` works; ``import yolokit.predict`` alone
loads nothing heavy): ``Predictor``, ``Results``, ``Boxes``, ``letterbox``, ``preprocess``, ``check_imgsz``,
``draw_boxes``, ``colors``.
"""

from __future__ import annotations

from yolokit.utils.lazy import lazy_getattr

__all__ = ["Predictor", "Results", "Boxes", "letterbox", "preprocess", "check_imgsz", "draw_boxes", "colors"]

_LAZY = {
    "Predictor": "yolokit.predict.predictor",
    "Results": "yolokit.predict.results",
    "Boxes": "yolokit.predict.results",
    "letterbox": "yolokit.predict.preprocess",
    "preprocess": "yolokit.predict.preprocess",
    "check_imgsz": "yolokit.predict.preprocess",
    "draw_boxes": "yolokit.predict.draw",
    "colors": "yolokit.predict.draw",
}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
