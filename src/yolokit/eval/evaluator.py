"""``DetectionEvaluator``: feed predictions and ground truth image by image, then compute COCO-exact metrics.

    evaluator = DetectionEvaluator({0: "rectangle", 1: "ellipse"})
    evaluator.update(preds, targets)         # any number of times
    metrics = evaluator.compute()            # DetectionMetrics
    evaluator.reset()

Matching happens in ``update`` (only per-(image, class) match flags are kept, not boxes), so memory grows with the
number of kept detections, not with image sizes. See :mod:`yolokit.eval.metrics` for the exact COCO rules.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from yolokit.eval.metrics import (
    COCO_AREA_RANGES,
    COCO_IOU_THRESHOLDS,
    COCO_RECALL_THRESHOLDS,
    DetectionMetrics,
    ImageClassMatch,
    accumulate_class,
    coco_summary,
    confidence_curves,
    f1_score,
    match_image,
    merge_matches,
    pr_curve,
    smooth,
)

CONFUSION_CONF = 0.25  # detections below this confidence are left out of the confusion matrix (reference default)
CONFUSION_IOU = 0.45  # minimum IoU of a detection/GT pair in the confusion matrix (reference default)
CURVE_POINTS = 1000  # confidence / recall grid of the P, R, F1 and PR curves


def _to_numpy(value: Any, columns: int | None = None) -> np.ndarray:
    """Tensor / array / list -> float64 numpy array (reshaped to (-1, columns) when given)."""
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy()
    array = np.asarray(value, dtype=np.float64)
    return array.reshape(-1, columns) if columns else array.reshape(-1)


def _box_iou(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """Plain IoU (N, M) of xyxy boxes (no +1)."""
    lt = np.maximum(a_xyxy[:, None, :2], b_xyxy[None, :, :2])
    rb = np.minimum(a_xyxy[:, None, 2:], b_xyxy[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a_xyxy[:, 2:] - a_xyxy[:, :2]).prod(-1)
    area_b = (b_xyxy[:, 2:] - b_xyxy[:, :2]).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def confusion_update(matrix: np.ndarray, pred: np.ndarray, gt_boxes: np.ndarray, gt_cls: np.ndarray,
                     conf: float = CONFUSION_CONF, iou: float = CONFUSION_IOU) -> None:
    """Add one image to ``matrix`` (nc+1, nc+1), rows = predicted class, columns = true class, index nc = background.

    Detections with confidence > ``conf`` are paired one-to-one with GT, class-agnostic, greedily by descending IoU
    among pairs with IoU > ``iou``. A pair counts at [pred class, true class]; an unpaired GT at [background, true];
    an unpaired detection at [pred class, background].
    """
    background = matrix.shape[0] - 1
    pred = pred[pred[:, 4] > conf]
    pred_cls, gt_cls = pred[:, 5].astype(int), gt_cls.astype(int)
    pairs = np.zeros((0, 2), dtype=int)
    if len(pred) and len(gt_boxes):
        ious = _box_iou(gt_boxes, pred[:, :4])  # (G, D)
        gi, di = np.nonzero(ious > iou)
        order = np.argsort(-ious[gi, di], kind="stable")
        used_gt, used_dt, chosen = set(), set(), []
        for g, d in zip(gi[order], di[order], strict=True):
            if g not in used_gt and d not in used_dt:
                used_gt.add(g)
                used_dt.add(d)
                chosen.append((g, d))
        pairs = np.array(chosen, dtype=int).reshape(-1, 2)
    np.add.at(matrix, (pred_cls[pairs[:, 1]], gt_cls[pairs[:, 0]]), 1)
    lone_gt = np.setdiff1d(np.arange(len(gt_cls)), pairs[:, 0])
    lone_dt = np.setdiff1d(np.arange(len(pred_cls)), pairs[:, 1])
    np.add.at(matrix, (np.full(len(lone_gt), background), gt_cls[lone_gt]), 1)
    np.add.at(matrix, (pred_cls[lone_dt], np.full(len(lone_dt), background)), 1)


class DetectionEvaluator:
    """COCO-exact box AP plus P/R/F1 at the best-F1 confidence and a confusion matrix.

    Args:
        names: class id -> name; every id is a category (classes without GT are excluded from AP means).
        iou_thresholds: (T,) IoU thresholds of mAP (COCO: 0.50:0.05:0.95).
        max_dets: detections kept per image and class (COCO: 100). AR is also reported at 1 and 10.
        area_ranges: name -> inclusive (lo, hi) box area in pixels; must contain "all", "small", "medium", "large".
    """

    def __init__(self, names: dict[int, str], *, iou_thresholds: Sequence[float] | np.ndarray = COCO_IOU_THRESHOLDS,
                 max_dets: int = 100, area_ranges: dict[str, tuple[float, float]] | None = None) -> None:
        self.names = {int(k): str(v) for k, v in names.items()}
        self.iou_thresholds = np.asarray(iou_thresholds, dtype=np.float64)
        self.max_dets = int(max_dets)
        ranges = dict(area_ranges or COCO_AREA_RANGES)
        missing = {"all", "small", "medium", "large"} - set(ranges)
        if missing:
            raise ValueError(f"area_ranges needs all/small/medium/large, missing {sorted(missing)}")
        self.area_names = list(ranges)
        self.area_ranges = np.array([ranges[n] for n in self.area_names], dtype=np.float64)  # (A, 2)
        self._all = self.area_names.index("all")
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far."""
        nc = len(self.names)
        self._records: dict[int, dict[Hashable, ImageClassMatch]] = defaultdict(dict)
        self._seen: set[Hashable] = set()
        self._next_id = 0
        self._instances = np.zeros(nc, dtype=np.int64)
        self._images = np.zeros(nc, dtype=np.int64)
        self.confusion = np.zeros((nc + 1, nc + 1), dtype=np.int64)

    @property
    def num_images(self) -> int:
        return len(self._seen)

    def update(self, preds: Sequence[Any], targets: Sequence[dict[str, Any]],
               image_ids: Sequence[Hashable] | None = None) -> None:
        """Add a batch of images.

        Args:
            preds: per image an (n, 6) array/tensor ``[x1, y1, x2, y2, conf, cls]`` in original-image pixels.
            targets: per image a dict with ``boxes_xyxy`` (m, 4) pixels, ``cls`` (m,) and optional ``iscrowd`` (m,).
            image_ids: unique sortable ids (COCO merges images in id order); default: a running counter.
        """
        if len(preds) != len(targets):
            raise ValueError(f"update got {len(preds)} predictions but {len(targets)} targets")
        if image_ids is None:
            image_ids = list(range(self._next_id, self._next_id + len(preds)))
        for pred, target, image_id in zip(preds, targets, image_ids, strict=True):
            if image_id in self._seen:
                raise ValueError(f"image id {image_id!r} was already evaluated: ids must be unique")
            self._seen.add(image_id)
            if isinstance(image_id, (int, np.integer)):
                self._next_id = max(self._next_id, int(image_id) + 1)
            self._update_image(image_id, _to_numpy(pred, 6), target)

    def _update_image(self, image_id: Hashable, pred: np.ndarray, target: dict[str, Any]) -> None:
        gt_boxes = _to_numpy(target["boxes_xyxy"], 4)
        gt_cls = _to_numpy(target["cls"]).astype(np.int64)
        crowd = _to_numpy(target.get("iscrowd", np.zeros(len(gt_cls)))).astype(bool)
        nc = len(self.names)
        for cls in (pred[:, 5].astype(np.int64), gt_cls):
            if len(cls) and (cls.min() < 0 or cls.max() >= nc):
                raise ValueError(f"class ids must be in [0, {nc}), found {int(cls.min())}..{int(cls.max())}")
        solid = ~crowd
        np.add.at(self._instances, gt_cls[solid], 1)
        self._images[np.unique(gt_cls[solid])] += 1
        confusion_update(self.confusion, pred, gt_boxes[solid], gt_cls[solid])
        matches = match_image(pred[:, :4], pred[:, 4], pred[:, 5], gt_boxes, gt_cls, crowd, self.iou_thresholds,
                              self.area_ranges, self.max_dets)
        for cls, record in matches.items():
            self._records[cls][image_id] = record

    def _class_records(self, cls: int) -> list[ImageClassMatch]:
        per_image = self._records.get(cls, {})
        return [per_image[i] for i in sorted(per_image)]

    def compute(self) -> DetectionMetrics:
        """Accumulate everything seen since the last ``reset`` into a :class:`DetectionMetrics`."""
        classes = sorted(self.names)
        max_dets = [1, 10, self.max_dets]
        num_thr, num_area = len(self.iou_thresholds), len(self.area_names)
        precision = -np.ones((num_thr, len(COCO_RECALL_THRESHOLDS), len(classes), num_area, 3))
        recall = -np.ones((num_thr, len(classes), num_area, 3))
        for k, cls in enumerate(classes):
            precision[:, :, k], recall[:, k] = accumulate_class(self._class_records(cls), max_dets, num_thr, num_area)
        stats = coco_summary(precision, recall, self.iou_thresholds, self.area_names, max_dets)
        curves = self._curves(classes)
        metrics = DetectionMetrics(
            names=dict(self.names), map=stats[0], map50=stats[1], map75=stats[2], map_small=stats[3],
            map_medium=stats[4], map_large=stats[5], coco_stats=stats, confusion=self.confusion.copy(),
            num_images=self.num_images, num_instances=int(self._instances.sum()), curves=curves)
        self._fill_f1(metrics, curves, precision, classes)
        return metrics

    def _curves(self, classes: list[int]) -> dict[str, np.ndarray]:
        """Per-class P, R, F1 over a confidence grid and PR (precision over a recall grid), IoU 0.5, area all."""
        grid = np.linspace(0, 1, CURVE_POINTS)
        shape = (len(classes), CURVE_POINTS)
        p_curve, r_curve, pr = np.zeros(shape), np.zeros(shape), np.zeros(shape)
        has_gt = np.zeros(len(classes), dtype=bool)
        t50 = int(np.argmin(np.abs(self.iou_thresholds - 0.5)))
        for k, cls in enumerate(classes):
            records = self._class_records(cls)
            num_gt = int(sum(r.num_gt[self._all] for r in records))
            has_gt[k] = num_gt > 0
            if not records or not num_gt:
                continue
            scores, matched, ignored = merge_matches(records, self.max_dets)
            keep = ~ignored[self._all, t50]
            scores, is_tp = scores[keep], matched[self._all, t50][keep]
            p_curve[k], r_curve[k] = confidence_curves(scores, is_tp, num_gt, grid)
            pr[k] = pr_curve(scores, is_tp, num_gt, grid)
        return {"grid": grid, "precision": p_curve, "recall": r_curve, "f1": f1_score(p_curve, r_curve),
                "pr": pr, "has_gt": has_gt}

    def _fill_f1(self, metrics: DetectionMetrics, curves: dict[str, np.ndarray], precision: np.ndarray,
                 classes: list[int]) -> None:
        """Pick the best mean-F1 confidence and write the summary P/R/F1 and the per-class rows."""
        has_gt = curves["has_gt"]
        index = 0
        if has_gt.any():
            index = int(np.argmax(smooth(curves["f1"][has_gt].mean(0))))
            metrics.precision = float(curves["precision"][has_gt, index].mean())
            metrics.recall = float(curves["recall"][has_gt, index].mean())
            metrics.f1 = float(curves["f1"][has_gt, index].mean())
            metrics.conf_threshold = float(curves["grid"][index])
        all_area, last = self._all, 2
        t50 = np.isclose(self.iou_thresholds, 0.5, rtol=0, atol=1e-12)
        t75 = np.isclose(self.iou_thresholds, 0.75, rtol=0, atol=1e-12)

        def ap(k: int, rows: np.ndarray) -> float | None:
            """Mean precision of class k over the chosen IoU thresholds (None without GT)."""
            if not has_gt[k] or not rows.any():
                return None
            return float(precision[rows, :, k, all_area, last].mean())

        every = np.ones(len(self.iou_thresholds), dtype=bool)
        for k, cls in enumerate(classes):
            metrics.per_class.append({
                "class": cls, "name": self.names[cls], "images": int(self._images[cls]),
                "instances": int(self._instances[cls]),
                "precision": float(curves["precision"][k, index]), "recall": float(curves["recall"][k, index]),
                "f1": float(curves["f1"][k, index]), "map50": ap(k, t50), "map75": ap(k, t75),
                "map": ap(k, every)})
