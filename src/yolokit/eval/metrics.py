"""COCO-exact average precision, precision/recall/F1 curves and the ``DetectionMetrics`` result (numpy only).

The AP machinery reproduces pycocotools ``COCOeval(iouType="bbox")`` step by step, so the summary numbers are the
same (tested against pycocotools 2.0.x):

* IoU of COCO ``[x, y, w, h]`` boxes (``ltwh``: top-left corner and size) without the old ``+1`` pixel
  convention; a crowd ground truth (GT) uses the detection's area as the union.
* Per image and category: detections sorted by score (stable mergesort), the top ``max_det`` kept.
* Per IoU threshold ``t`` and area range, each detection in score order takes the unmatched GT with the highest
  IoU ``>= t`` (ties go to the later GT), preferring GT that is not ignored. A GT is ignored when it is a crowd or its
  area lies outside the range; a detection matched to an ignored GT is ignored, and so is an unmatched detection
  whose own area lies outside the range. Crowd GT may be matched many times.
* Per category and area range: all images' detections merged (images in id order), sorted by score (mergesort),
  cumulative TP/FP, precision made monotone from the right, sampled at 101 recall thresholds (first index whose
  recall reaches the threshold, 0 past the end). A category without non-ignored GT gets -1 and is left out of
  every mean; a summary with no valid category is -1 (COCO's convention for "undefined").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yolokit.eval.reference_api import ReferenceMetricsMixin
from yolokit.utils.io import atomic_write_json

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # identical to COCOeval Params.iouThrs
COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)  # identical to COCOeval Params.recThrs
COCO_AREA_RANGES: dict[str, tuple[float, float]] = {
    "all": (0.0, 1e5**2),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e5**2),
}


@dataclass
class ImageClassMatch:
    """Matching result of one (image, category) pair.

    Attributes:
        scores: (D,) detection scores, sorted high to low (the top ``max_det`` only).
        matched: (A, T, D) bool, detection matched to a GT at area range a and IoU threshold t.
        ignored: (A, T, D) bool, detection ignored (matched to an ignored GT, or unmatched and outside the range).
        num_gt: (A,) int, GT that is not ignored per area range.
    """

    scores: np.ndarray
    matched: np.ndarray
    ignored: np.ndarray
    num_gt: np.ndarray


def xyxy_to_ltwh(boxes_xyxy: np.ndarray) -> np.ndarray:
    """(N, 4) ``[x1, y1, x2, y2]`` -> (N, 4) COCO ``[x1, y1, w, h]`` (``ltwh``) in float64."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


xyxy_to_xywh = xyxy_to_ltwh  # the former name; yolokit's ``xywh`` is the centre format (see yolokit.ops.boxes)


def coco_box_iou(dt_ltwh: np.ndarray, gt_ltwh: np.ndarray, gt_crowd: np.ndarray | None = None) -> np.ndarray:
    """IoU (D, G) of COCO ``[x, y, w, h]`` (``ltwh``) boxes computed exactly like pycocotools' ``bbIou`` (no +1,
    crowd union = dt).

    Example: ``coco_box_iou([[0, 0, 10, 10]], [[5, 0, 10, 10]]) -> [[1/3]]``.
    """
    dt = np.asarray(dt_ltwh, dtype=np.float64).reshape(-1, 4)[:, None, :]  # (D, 1, 4)
    gt = np.asarray(gt_ltwh, dtype=np.float64).reshape(-1, 4)[None, :, :]  # (1, G, 4)
    w = np.minimum(dt[..., 2] + dt[..., 0], gt[..., 2] + gt[..., 0]) - np.maximum(dt[..., 0], gt[..., 0])
    h = np.minimum(dt[..., 3] + dt[..., 1], gt[..., 3] + gt[..., 1]) - np.maximum(dt[..., 1], gt[..., 1])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    dt_area = dt[..., 2] * dt[..., 3]
    union = dt_area + gt[..., 2] * gt[..., 3] - inter
    if gt_crowd is not None:
        union = np.where(np.asarray(gt_crowd, dtype=bool)[None, :], np.broadcast_to(dt_area, union.shape), union)
    return np.divide(inter, union, out=np.zeros_like(inter), where=inter > 0)


def greedy_match(ious: np.ndarray, gt_ignored: np.ndarray, gt_crowd: np.ndarray,
                 iou_thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCO greedy matching of score-sorted detections to GT, for every area range and IoU threshold at once.

    Args:
        ious: (D, G) IoU, detections sorted by score.
        gt_ignored: (A, G) bool, GT ignored per area range.
        gt_crowd: (G,) bool, crowd GT (can absorb many detections).
        iou_thresholds: (T,).
    Returns:
        matched (A, T, D) bool and matched_to_ignored (A, T, D) bool.
    """
    num_area, num_gt = gt_ignored.shape
    num_dt, num_thr = ious.shape[0], len(iou_thresholds)
    if num_dt == 0 or num_gt == 0:
        return np.zeros((num_area, num_thr, num_dt), dtype=bool), np.zeros((num_area, num_thr, num_dt), dtype=bool)
    patterns, inverse = np.unique(gt_ignored, axis=0, return_inverse=True)  # area ranges that ignore the same GT
    matched, to_ignored = _greedy_match_patterns(ious, patterns, np.asarray(gt_crowd, dtype=bool), iou_thresholds)
    inverse = inverse.reshape(-1)
    return matched[inverse], to_ignored[inverse]


def _greedy_match_patterns(ious: np.ndarray, gt_ignored: np.ndarray, gt_crowd: np.ndarray,
                           iou_thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`greedy_match` for (P, G) distinct ignore patterns. Each detection takes, per (pattern, threshold),
    the free GT with IoU >= t and the highest IoU (ties: the last GT), non-ignored GT first."""
    num_pat, num_gt = gt_ignored.shape
    num_dt, num_thr = ious.shape[0], len(iou_thresholds)
    matched = np.zeros((num_pat, num_thr, num_dt), dtype=bool)
    to_ignored = np.zeros_like(matched)
    thresholds = np.minimum(np.asarray(iou_thresholds, dtype=np.float64), 1 - 1e-10)
    over = ious[:, None, :] >= thresholds[None, :, None]  # (D, T, G)
    available = np.ones((num_pat, num_thr, num_gt), dtype=bool)  # not yet taken (crowd GT stays available)
    wanted = ~gt_ignored[:, None, :]  # (P, 1, G)
    reversed_ious = ious[:, ::-1]
    for d in np.nonzero(over.any(axis=(1, 2)))[0]:  # the others match nothing
        free = over[d] & available  # (P, T, G)
        preferred = free & wanted
        free = np.where(preferred.any(axis=-1, keepdims=True), preferred, free)
        masked = np.where(free[..., ::-1], reversed_ious[d], -1.0)
        p_idx, t_idx = np.nonzero(masked.max(axis=-1) >= 0)
        g_idx = num_gt - 1 - masked.argmax(axis=-1)[p_idx, t_idx]  # last GT among equal best IoUs
        matched[p_idx, t_idx, d] = True
        to_ignored[p_idx, t_idx, d] = gt_ignored[p_idx, g_idx]
        available[p_idx, t_idx, g_idx] = gt_crowd[g_idx]
    return matched, to_ignored


def match_image(dt_boxes_xyxy: np.ndarray, dt_scores: np.ndarray, dt_cls: np.ndarray, gt_boxes_xyxy: np.ndarray,
                gt_cls: np.ndarray, gt_crowd: np.ndarray, iou_thresholds: np.ndarray, area_ranges: np.ndarray,
                max_det: int) -> dict[int, ImageClassMatch]:
    """Evaluate one image like ``COCOeval.evaluateImg``, for every category present and every area range.

    Args:
        dt_boxes_xyxy: (D, 4) detections in pixels; dt_scores (D,); dt_cls (D,) int.
        gt_boxes_xyxy: (G, 4) ground truth in pixels; gt_cls (G,) int; gt_crowd (G,) bool.
        iou_thresholds: (T,). area_ranges: (A, 2) inclusive ``[lo, hi]`` box areas. max_det: kept per category.
    Returns:
        category id -> :class:`ImageClassMatch` for each category with detections or GT in this image.
    """
    dt_ltwh, gt_ltwh = xyxy_to_ltwh(dt_boxes_xyxy), xyxy_to_ltwh(gt_boxes_xyxy)
    scores = np.asarray(dt_scores, dtype=np.float64).reshape(-1)
    dt_cls, gt_cls = np.asarray(dt_cls).astype(np.int64), np.asarray(gt_cls).astype(np.int64)
    gt_crowd = np.asarray(gt_crowd, dtype=bool).reshape(-1)
    lo, hi = area_ranges[:, :1], area_ranges[:, 1:]  # (A, 1)
    gt_area, dt_area = gt_ltwh[:, 2] * gt_ltwh[:, 3], dt_ltwh[:, 2] * dt_ltwh[:, 3]
    gt_ignored = gt_crowd[None, :] | (gt_area[None, :] < lo) | (gt_area[None, :] > hi)  # (A, G)
    dt_outside = (dt_area[None, :] < lo) | (dt_area[None, :] > hi)  # (A, D)
    out: dict[int, ImageClassMatch] = {}
    for cls in np.union1d(dt_cls, gt_cls):
        dt_idx, gt_idx = np.nonzero(dt_cls == cls)[0], np.nonzero(gt_cls == cls)[0]
        order = dt_idx[np.argsort(-scores[dt_idx], kind="mergesort")[:max_det]]
        if len(order) and len(gt_idx):
            ious = coco_box_iou(dt_ltwh[order], gt_ltwh[gt_idx], gt_crowd[gt_idx])
            matched, ignored = greedy_match(ious, gt_ignored[:, gt_idx], gt_crowd[gt_idx], iou_thresholds)
        else:  # nothing to match: every detection is unmatched
            matched = np.zeros((len(area_ranges), len(iou_thresholds), len(order)), dtype=bool)
            ignored = np.zeros_like(matched)
        ignored |= ~matched & dt_outside[:, None, order]
        out[int(cls)] = ImageClassMatch(scores[order], matched, ignored, (~gt_ignored[:, gt_idx]).sum(axis=1))
    return out


def merge_matches(records: list[ImageClassMatch], max_det: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate per-image results (in image order), keep each image's top ``max_det``, sort by score (mergesort).

    Returns scores (D,), matched (A, T, D), ignored (A, T, D).
    """
    scores = np.concatenate([r.scores[:max_det] for r in records])
    matched = np.concatenate([r.matched[..., :max_det] for r in records], axis=-1)
    ignored = np.concatenate([r.ignored[..., :max_det] for r in records], axis=-1)
    order = np.argsort(-scores, kind="mergesort")
    return scores[order], matched[..., order], ignored[..., order]


def precision_at_recalls(tp_cum: np.ndarray, fp_cum: np.ndarray, num_gt: int,
                         recall_thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, D) cumulative TP/FP -> precision (T, R) at the recall thresholds and final recall (T,), COCO-style."""
    num_thr, num_dt = tp_cum.shape
    precision = np.zeros((num_thr, len(recall_thresholds)))
    if num_dt == 0:
        return precision, np.zeros(num_thr)
    recall = tp_cum / num_gt
    prec = tp_cum / (fp_cum + tp_cum + np.spacing(1))
    prec = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]  # monotone envelope from the right
    for t in range(num_thr):
        idx = np.searchsorted(recall[t], recall_thresholds, side="left")
        valid = idx < num_dt
        precision[t, valid] = prec[t, idx[valid]]
    return precision, recall[:, -1]


def accumulate_class(records: list[ImageClassMatch], max_dets: list[int], num_thr: int, num_area: int,
                     recall_thresholds: np.ndarray = COCO_RECALL_THRESHOLDS) -> tuple[np.ndarray, np.ndarray]:
    """One category's precision (T, R, A, M) and recall (T, A, M) over all images (-1 where undefined)."""
    precision = -np.ones((num_thr, len(recall_thresholds), num_area, len(max_dets)))
    recall = -np.ones((num_thr, num_area, len(max_dets)))
    if not records:
        return precision, recall
    num_gt = np.sum([r.num_gt for r in records], axis=0)  # (A,)
    for m, max_det in enumerate(max_dets):
        _, matched, ignored = merge_matches(records, max_det)
        tp_cum = np.cumsum(matched & ~ignored, axis=-1, dtype=np.float64)  # (A, T, D)
        fp_cum = np.cumsum(~matched & ~ignored, axis=-1, dtype=np.float64)
        for a in range(num_area):
            if num_gt[a] == 0:
                continue
            precision[:, :, a, m], recall[:, a, m] = precision_at_recalls(tp_cum[a], fp_cum[a], int(num_gt[a]),
                                                                        recall_thresholds)
    return precision, recall


def mean_valid(values: np.ndarray) -> float:
    """Mean of the entries > -1, or -1 when there is none (COCO's summarize rule)."""
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def coco_summary(precision: np.ndarray, recall: np.ndarray, iou_thresholds: np.ndarray,
                 area_names: list[str], max_dets: list[int]) -> list[float]:
    """The 12 numbers of ``COCOeval.summarize()`` from precision (T, R, K, A, M) and recall (T, K, A, M).

    Order: AP, AP50, AP75, AP_small, AP_medium, AP_large, AR@maxDets[0], AR@maxDets[1], AR@maxDets[2],
    AR_small, AR_medium, AR_large (``max_dets`` must hold three values, the last one used for the area rows).
    """
    def ap(iou: float | None = None, area: str = "all", m: int = 2) -> float:
        s = precision[..., area_names.index(area), m]
        if iou is not None:
            s = s[np.isclose(iou_thresholds, iou, rtol=0, atol=1e-12)]
        return mean_valid(s)

    def ar(area: str = "all", m: int = 2) -> float:
        return mean_valid(recall[..., area_names.index(area), m])

    return [ap(), ap(0.5), ap(0.75), ap(area="small"), ap(area="medium"), ap(area="large"),
            ar(m=0), ar(m=1), ar(), ar("small"), ar("medium"), ar("large")]


def confidence_curves(scores: np.ndarray, is_tp: np.ndarray, num_gt: int,
                      grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall (N,) of one class when keeping the detections with score >= each grid value.

    ``scores`` (D,) sorted high to low with their TP flags (D,) (ignored detections removed). Above the top score
    precision holds its value at the top detection (0 for a class without detections) and recall is 0.
    """
    if scores.size == 0:
        return np.zeros(len(grid)), np.zeros(len(grid))
    tp = np.cumsum(is_tp, dtype=np.float64)
    prec = tp / np.arange(1, len(tp) + 1)
    kept = np.searchsorted(-scores, -grid, side="right")  # detections with score >= grid value, (N,)
    index = np.maximum(kept - 1, 0)
    precision = prec[index]
    recall = np.where(kept > 0, tp[index] / max(num_gt, 1), 0.0)
    return precision, recall


def pr_curve(scores: np.ndarray, is_tp: np.ndarray, num_gt: int, recall_grid: np.ndarray) -> np.ndarray:
    """Monotone precision envelope (N,) of one class sampled at ``recall_grid`` (0 past the highest recall)."""
    if scores.size == 0 or num_gt == 0:
        return np.zeros(len(recall_grid))
    tp = np.cumsum(is_tp, dtype=np.float64)
    prec = np.maximum.accumulate((tp / np.arange(1, len(tp) + 1))[::-1])[::-1]
    index = np.searchsorted(tp / num_gt, recall_grid, side="left")
    return np.where(index < len(tp), prec[np.minimum(index, len(tp) - 1)], 0.0)


def smooth(values: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Centred moving average over ``fraction`` of the points (odd window, edges padded with their values)."""
    half = int(round(len(values) * fraction / 2))
    if half < 1:
        return values.astype(np.float64)
    padded = np.concatenate([np.full(half, values[0]), values, np.full(half, values[-1])])
    return np.convolve(padded, np.ones(2 * half + 1) / (2 * half + 1), mode="valid")


def f1_score(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """Harmonic mean, 0 where both are 0."""
    total = precision + recall
    return np.divide(2 * precision * recall, total, out=np.zeros_like(total, dtype=np.float64), where=total > 0)



@dataclass
class DetectionMetrics(ReferenceMetricsMixin):
    """Validation result. AP values are COCO's (-1 = undefined: no ground truth in that area range).

    ``precision``, ``recall`` and ``f1`` are class means at ``conf_threshold``, the confidence that maximises the
    (smoothed) mean F1 over the classes with ground truth, from IoU-0.5 matches. ``confusion`` is (nc+1, nc+1),
    rows = predicted class, columns = true class, last row/column = background. ``speed`` is ms per image;
    ``save_dir`` the run directory the validator wrote to (None when nothing was written). The reference's names
    (``metrics.box.map``, ``.maps``, ``.results_dict``, ...) come from :class:`ReferenceMetricsMixin`.
    """

    names: dict[int, str]
    map: float = 0.0
    map50: float = 0.0
    map75: float = 0.0
    map_small: float = -1.0
    map_medium: float = -1.0
    map_large: float = -1.0
    precision: float = 0.0
    recall: float = 0.0
    f1: float = 0.0
    conf_threshold: float = 0.0
    per_class: list[dict[str, Any]] = field(default_factory=list)
    coco_stats: list[float] = field(default_factory=list)
    speed: dict[str, float] = field(default_factory=dict)
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), dtype=np.int64))
    num_images: int = 0
    num_instances: int = 0
    curves: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    save_dir: Path | None = None

    @property
    def fitness(self) -> float:
        """Model selection score: mAP50-95 (the reference's 8.4 rule)."""
        return self.map

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict: summary numbers, per-class rows, COCO stats, speed, confusion matrix, names."""
        keys = ("map", "map50", "map75", "map_small", "map_medium", "map_large", "precision", "recall", "f1",
                "conf_threshold", "fitness")
        return {
            "metrics": {key: float(getattr(self, key)) for key in keys},
            "num_images": int(self.num_images),
            "num_instances": int(self.num_instances),
            "per_class": [dict(row) for row in self.per_class],
            "coco_stats": [float(v) for v in self.coco_stats],
            "speed_ms_per_image": {key: float(v) for key, v in self.speed.items()},
            "confusion_matrix": np.asarray(self.confusion).astype(int).tolist(),
            "names": {str(k): v for k, v in self.names.items()},
        }

    def format_table(self, classes: bool = True) -> str:
        """Aligned text table: an ``all`` row, then (``classes``) one row per class with ground truth instances."""
        width = max([len("Class")] + [len(str(n)) for n in self.names.values()]) + 2
        width = max(width, 14)
        head = f"{'Class':>{width}}" + "".join(f"{h:>11}" for h in ("Images", "Instances", "P", "R", "mAP50",
                                                                    "mAP50-95"))
        rows = [head, self._row("all", self.num_images, self.num_instances, self.precision, self.recall,
                                self.map50, self.map, width)]
        for row in self.per_class if classes else []:
            if row["instances"] > 0:
                rows.append(self._row(row["name"], row["images"], row["instances"], row["precision"],
                                      row["recall"], row["map50"], row["map"], width))
        return "\n".join(rows)

    @staticmethod
    def _row(name: str, images: int, instances: int, p: float, r: float, ap50: float, ap: float,
             width: int) -> str:
        values = "".join(f"{v:>11.3f}" for v in (p, r, max(ap50, 0.0), max(ap, 0.0)))
        return f"{name:>{width}}{images:>11d}{instances:>11d}{values}"

    def save_json(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write :meth:`to_dict` (plus ``extra`` keys such as the config) to ``path`` atomically."""
        return atomic_write_json(path, {**self.to_dict(), **(extra or {})})
