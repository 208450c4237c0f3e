"""Evaluation: COCO-exact box AP (:mod:`.metrics`), the streaming evaluator, plots and ``validate``."""

from yolokit.eval.evaluator import DetectionEvaluator
from yolokit.eval.metrics import DetectionMetrics

__all__ = ["DetectionEvaluator", "DetectionMetrics"]
