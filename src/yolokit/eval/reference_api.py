"""The reference implementation's names for validation results, on top of yolokit's :class:`DetectionMetrics`.

Users of the reference read ``metrics.box.map``, ``metrics.box.maps``, ``metrics.results_dict`` ...; these are the
same numbers under those names (documented in ``docs/reference-compat.md``). Nothing is recomputed: every value
is a view of the fields the evaluator filled (``map``, ``map50``, ``map75``, ``precision``, ``recall``,
``per_class``). Per-class arrays follow the reference's layout: ``ap_class_index`` lists the classes with ground
truth, ``p`` / ``r`` / ``f1`` / ``ap50`` / ``ap`` are aligned with it, and ``maps`` has one entry per class of the
model (``nc``), the mAP50-95 of that class, or the overall mAP50-95 for a class without ground truth (as there).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["BoxMetrics", "ReferenceMetricsMixin", "RESULT_KEYS"]

# The reference's ``results_dict`` keys (then "fitness").
RESULT_KEYS = ("metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)")


class BoxMetrics:
    """``metrics.box``: the box metrics under the reference's attribute names (read-only view)."""

    def __init__(self, metrics: Any) -> None:
        self._metrics = metrics

    def _rows(self) -> list[dict[str, Any]]:
        return [row for row in self._metrics.per_class if row.get("instances", 0) > 0]

    def _column(self, key: str) -> np.ndarray:
        return np.array([max(float(row.get(key) or 0.0), 0.0) for row in self._rows()], dtype=np.float64)

    @property
    def map(self) -> float:
        """mAP50-95 over the classes with ground truth (COCO)."""
        return float(self._metrics.map)

    @property
    def map50(self) -> float:
        return float(self._metrics.map50)

    @property
    def map75(self) -> float:
        return float(self._metrics.map75)

    @property
    def mp(self) -> float:
        """Mean precision over the classes with ground truth, at the best mean-F1 confidence."""
        return float(self._metrics.precision)

    @property
    def mr(self) -> float:
        """Mean recall, at the same confidence as :attr:`mp`."""
        return float(self._metrics.recall)

    @property
    def nc(self) -> int:
        return len(self._metrics.names)

    @property
    def ap_class_index(self) -> np.ndarray:
        """``(K,)`` class ids with ground truth, in class order."""
        return np.array([int(row["class"]) for row in self._rows()], dtype=np.int64)

    @property
    def p(self) -> np.ndarray:
        """``(K,)`` precision per class of :attr:`ap_class_index`."""
        return self._column("precision")

    @property
    def r(self) -> np.ndarray:
        return self._column("recall")

    @property
    def f1(self) -> np.ndarray:
        return self._column("f1")

    @property
    def ap50(self) -> np.ndarray:
        """``(K,)`` AP at IoU 0.5 per class of :attr:`ap_class_index`."""
        return self._column("map50")

    @property
    def ap(self) -> np.ndarray:
        """``(K,)`` AP at IoU 0.5:0.95 per class of :attr:`ap_class_index`."""
        return self._column("map")

    @property
    def maps(self) -> np.ndarray:
        """``(nc,)`` mAP50-95 per class; a class without ground truth holds the overall :attr:`map`."""
        out = np.full(self.nc, self.map, dtype=np.float64)
        out[self.ap_class_index] = self.ap
        return out

    def mean_results(self) -> list[float]:
        """``[mp, mr, map50, map]``."""
        return [self.mp, self.mr, self.map50, self.map]

    def class_result(self, i: int) -> tuple[float, float, float, float]:
        """``(p, r, ap50, ap)`` of the ``i``-th class of :attr:`ap_class_index`."""
        return float(self.p[i]), float(self.r[i]), float(self.ap50[i]), float(self.ap[i])

    def __repr__(self) -> str:
        return f"BoxMetrics(map={self.map:.4f}, map50={self.map50:.4f}, mp={self.mp:.4f}, mr={self.mr:.4f})"


class ReferenceMetricsMixin:
    """The reference's top-level names on ``DetectionMetrics``: ``box``, ``maps``, ``results_dict``, ``keys``,
    ``mean_results()``, ``class_result(i)`` (``save_dir``, ``speed``, ``fitness`` are fields of their own)."""

    @property
    def box(self) -> BoxMetrics:
        return BoxMetrics(self)

    @property
    def maps(self) -> np.ndarray:
        return self.box.maps

    @property
    def keys(self) -> list[str]:
        return list(RESULT_KEYS)

    @property
    def results_dict(self) -> dict[str, float]:
        """``{"metrics/precision(B)": mp, "metrics/recall(B)": mr, "metrics/mAP50(B)": map50,
        "metrics/mAP50-95(B)": map, "fitness": fitness}``."""
        return {**dict(zip(RESULT_KEYS, self.box.mean_results(), strict=True)), "fitness": float(self.fitness)}

    def mean_results(self) -> list[float]:
        return self.box.mean_results()

    def class_result(self, i: int) -> tuple[float, float, float, float]:
        return self.box.class_result(i)
