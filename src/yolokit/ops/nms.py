"""Non-maximum suppression: an exact, vectorised greedy NMS and the detection post-processing built on it.

Greedy NMS semantics (identical to ``torchvision.ops.nms``): boxes are visited in decreasing score order; a box is
kept unless its IoU with an already *kept* box is strictly greater than ``iou_threshold``. Ties in score are
visited in index order.

Implementation: boxes are sorted and processed in blocks of ``_BLOCK`` rows. A block first drops every box that
overlaps a box kept in earlier blocks (one vectorised IoU per chunk of kept boxes). Inside the block, the strict
upper triangle ``S[j, i] = IoU(j, i) > t`` (j before i) is resolved with the fixed point
``keep = alive & ~any_j(keep[j] & S[j, i])``: starting from ``keep = alive``, after ``k`` passes the first ``k``
boxes are final, so the iteration reaches the unique fixed point, which is exactly the greedy answer (usually in a
handful of passes). Memory stays bounded by ``_BLOCK * _KEPT_CHUNK`` for any number of boxes.

Large inputs with little overlap (e.g. 30k uniformly spread boxes, where the kept set grows with the input and the
block method costs ``candidates x kept``) use a sweep instead: IoU > t >= 0 needs the horizontal overlap to exceed
``t * width`` of both boxes, so after sorting by ``x1`` a box can only pair with the boxes whose ``x1`` lies within
``(1 - t) * width`` to its right. Only those pairs are tested (exact float32 IoU, the same formula), giving a sparse
list of "j suppresses i" edges, and the same fixed point is run on the edges. The sweep is chosen when its pair count
is below 10% of ``N^2`` (measured break-even on 30k boxes); both methods return identical indices.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from yolokit.ops.boxes import box_area, xywh2xyxy

__all__ = ["nms", "batched_nms", "non_max_suppression", "filter_end2end"]

_BLOCK = 512  # boxes resolved together inside one IoU block
_KEPT_CHUNK = 512  # kept boxes compared with a block at once
_SWEEP_MIN = 4096  # inputs at least this large may use the sweep
_SWEEP_ROWS = 128  # rows (in x1 order) of one sweep step
_SWEEP_COLS = 8192  # columns of one sweep step
_SWEEP_MAX_FRACTION = 0.1  # use the sweep only if it tests fewer than this fraction of the N^2 pairs
_SWEEP_PASSES = 64  # fixed-point passes on the edges before the sequential finish


def _iou_above(boxes_a: torch.Tensor, boxes_b: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """``(N, M)`` bool: IoU(a_i, b_j) > threshold, computed as ``inter / (area_a + area_b - inter)``."""
    a, b = boxes_a[:, None, :], boxes_b[None, :, :]  # (N, 1, 4), (1, M, 4)
    width = torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])  # (N, M)
    height = torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])  # (N, M)
    inter = width.clamp_(min=0).mul_(height.clamp_(min=0))  # (N, M)
    union = (box_area(boxes_a)[:, None] + box_area(boxes_b)[None, :]).sub_(inter)  # (N, M)
    return inter.div_(union).gt_(iou_threshold).bool()


def _resolve_block(suppresses: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """Greedy keep mask of a score-sorted block. ``suppresses[j, i]`` (j < i only) says kept j removes i."""
    if not bool(suppresses.any()):
        return alive
    weights = suppresses.float()  # (b, b)
    keep = alive.clone()
    while True:
        hit = (keep.float() @ weights) > 0  # (b,) some kept earlier box suppresses i
        new_keep = alive & ~hit
        if torch.equal(new_keep, keep):
            return keep
        keep = new_keep


def _greedy_sorted(boxes_xyxy: torch.Tensor, iou_threshold: float, max_keep: int | None = None) -> torch.Tensor:
    """Keep mask ``(N,)`` for boxes already sorted by decreasing score.

    With ``max_keep``, stops after the block in which the ``max_keep``-th box is kept: the mask is then exact for
    every box up to there and False after, so its first ``max_keep`` kept boxes are those of the full run.
    """
    count = boxes_xyxy.shape[0]
    keep = torch.zeros(count, dtype=torch.bool, device=boxes_xyxy.device)
    kept = boxes_xyxy[:0]  # (K, 4) boxes kept so far
    for start in range(0, count, _BLOCK):
        block = boxes_xyxy[start : start + _BLOCK]  # (b, 4)
        alive = torch.ones(block.shape[0], dtype=torch.bool, device=block.device)
        for k in range(0, kept.shape[0], _KEPT_CHUNK):
            alive &= ~_iou_above(kept[k : k + _KEPT_CHUNK], block, iou_threshold).any(0)
        index = alive.nonzero().squeeze(1)  # only survivors can keep or suppress
        candidates = block[index]
        suppresses = _iou_above(candidates, candidates, iou_threshold).triu_(diagonal=1)
        block_keep = index[_resolve_block(suppresses, torch.ones_like(index, dtype=torch.bool))]
        keep[start + block_keep] = True
        kept = torch.cat((kept, block[block_keep]))
        if max_keep is not None and kept.shape[0] >= max_keep:
            break
    return keep


def _sweep_reach(boxes_xyxy: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """``(N,)`` float64 bound: a box whose ``x1`` is >= this cannot have IoU > t with the box (for ``t >= 0``).

    Exact arithmetic gives ``x1_j < x2_i - t * w_i``; the bound is relaxed by 0.1% of ``t * w_i`` and computed in
    float64 so float32 rounding of the IoU can never make a pruned pair count.
    """
    x1, x2 = boxes_xyxy[:, 0].double(), boxes_xyxy[:, 2].double()
    return x2 - (x2 - x1).clamp(min=0) * (iou_threshold * (1 - 1e-3))


def _sweep_edges(boxes_x: torch.Tensor, iou_threshold: float, starts: list[int],
                 stops: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs ``(p, q)`` (x-order indices, ``p < q``) with IoU > threshold among x-sorted boxes.

    Rows ``starts[k] : starts[k] + _SWEEP_ROWS`` are tested against columns ``starts[k] + 1 : stops[k]`` only.
    """
    sources, targets = [], []
    for row, stop in zip(starts, stops, strict=True):
        rows = boxes_x[row : row + _SWEEP_ROWS]
        for col in range(row + 1, stop, _SWEEP_COLS):
            hit = _iou_above(rows, boxes_x[col : min(col + _SWEEP_COLS, stop)], iou_threshold)  # (r, c)
            p, q = hit.nonzero(as_tuple=True)
            p, q = p + row, q + col
            later = q > p  # each unordered pair once
            sources.append(p[later])
            targets.append(q[later])
    empty = torch.zeros(0, dtype=torch.int64, device=boxes_x.device)
    return torch.cat(sources) if sources else empty, torch.cat(targets) if targets else empty


def _resolve_edges(count: int, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Greedy keep mask ``(count,)`` from "src suppresses dst if kept" edges (``src < dst``, score ranks)."""
    keep = torch.ones(count, dtype=torch.bool, device=src.device)
    for _ in range(_SWEEP_PASSES):
        hit = torch.zeros_like(keep)
        hit[dst[keep[src]]] = True
        new_keep = ~hit
        if torch.equal(new_keep, keep):
            return keep
        keep = new_keep
    # a long suppression chain: finish with one sequential scan in score order over the sorted edge list
    order = torch.argsort(src, stable=True)
    src, dst = src[order], dst[order]
    starts = torch.searchsorted(src, torch.arange(count + 1, device=src.device)).cpu().numpy()
    dst_np, keep_np = dst.cpu().numpy(), np.ones(count, dtype=bool)
    for i in range(count):
        if keep_np[i]:
            keep_np[dst_np[starts[i] : starts[i + 1]]] = False
    return torch.from_numpy(keep_np).to(keep.device)


def _greedy_sweep(boxes_xyxy: torch.Tensor, iou_threshold: float) -> torch.Tensor | None:
    """Keep mask for score-sorted boxes via the x1 sweep, or None when the sweep would test too many pairs."""
    count = boxes_xyxy.shape[0]
    if count < _SWEEP_MIN or not 0.0 <= iou_threshold or not bool(torch.isfinite(boxes_xyxy).all()):
        return None
    order_x = torch.sort(boxes_xyxy[:, 0], stable=True).indices  # x order -> score rank
    boxes_x = boxes_xyxy[order_x]
    reach = _sweep_reach(boxes_x, iou_threshold)
    ends = torch.searchsorted(boxes_x[:, 0].double().contiguous(), reach.contiguous())  # first x1 >= reach
    ends = torch.maximum(ends, torch.arange(1, count + 1, device=ends.device))
    starts = torch.arange(0, count, _SWEEP_ROWS, device=ends.device)  # row runs of _SWEEP_ROWS in x order
    stops = torch.nn.functional.pad(ends, (0, (-count) % _SWEEP_ROWS)).view(-1, _SWEEP_ROWS).amax(1)
    sizes = (count - starts).clamp(max=_SWEEP_ROWS)
    if float(((stops - starts) * sizes).sum()) > _SWEEP_MAX_FRACTION * count * count:
        return None  # heavy overlap: the sweep would test too many pairs; the block method (few kept) is cheaper
    p, q = _sweep_edges(boxes_x, iou_threshold, starts.tolist(), stops.tolist())
    p, q = order_x[p], order_x[q]  # score ranks
    return _resolve_edges(count, torch.minimum(p, q), torch.maximum(p, q))


def nms(boxes_xyxy: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
        max_keep: int | None = None) -> torch.Tensor:
    """Exact greedy non-maximum suppression.

    Args:
        boxes_xyxy: ``(N, 4)`` boxes ``(x1, y1, x2, y2)``.
        scores: ``(N,)`` scores.
        iou_threshold: a box is dropped when its IoU with a kept higher-scoring box is ``> iou_threshold``.
        max_keep: only the first ``max_keep`` kept boxes are needed (e.g. ``max_det``): the work may stop once
            they are known. The result then starts with exactly those boxes (and may hold a few more).

    Returns:
        ``(K,)`` int64 indices into the input of the kept boxes, sorted by decreasing score (ties: lower index
        first).

    Example:
        >>> nms(torch.tensor([[0., 0, 2, 1], [0, 0, 1, 1]]), torch.tensor([0.9, 0.8]), 0.5)  # IoU exactly 0.5
        tensor([0, 1])
    """
    if not isinstance(boxes_xyxy, torch.Tensor) or boxes_xyxy.ndim != 2 or boxes_xyxy.shape[1] != 4:
        raise ValueError(f"nms: expected boxes_xyxy of shape (N, 4), got {tuple(getattr(boxes_xyxy, 'shape', ()))}")
    if not isinstance(scores, torch.Tensor) or scores.shape != boxes_xyxy.shape[:1]:
        raise ValueError(f"nms: expected scores of shape ({boxes_xyxy.shape[0]},), got {tuple(scores.shape)}")
    if boxes_xyxy.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes_xyxy.device)
    order = torch.sort(scores, descending=True, stable=True).indices  # (N,)
    sorted_boxes = boxes_xyxy[order].float()
    keep = None if max_keep is not None else _greedy_sweep(sorted_boxes, float(iou_threshold))
    if keep is None:
        keep = _greedy_sorted(sorted_boxes, float(iou_threshold), max_keep)
    return order[keep]


def batched_nms(
    boxes_xyxy: torch.Tensor, scores: torch.Tensor, class_ids: torch.Tensor, iou_threshold: float, max_wh: float = 7680,
    max_keep: int | None = None,
) -> torch.Tensor:
    """Per-class NMS: boxes of different classes never suppress each other (``max_wh=0``: class-agnostic).

    Follows the reference exactly: boxes are shifted by ``class_id * max_wh`` and one NMS runs on the shifted
    boxes. When every box fits in ``max_wh`` pixels (always, for real images) the shift makes cross-class IoU
    zero, so the NMS is run per class instead, which gives the same answer with far less work (large inputs first
    try one sweep over the shifted boxes, which never tests pairs of different classes). With ``max_keep`` (as in
    :func:`nms`) one NMS runs over the shifted boxes of all classes in score order and stops once ``max_keep``
    boxes are kept, which is what ``max_det`` needs.

    Returns:
        ``(K,)`` int64 kept indices sorted by decreasing score (ties: lower index first).
    """
    if boxes_xyxy.shape[0] == 0 or max_wh == 0:
        return nms(boxes_xyxy, scores, iou_threshold, max_keep)
    shifted = boxes_xyxy.float() + class_ids.float()[:, None] * max_wh  # (N, 4)
    xs = boxes_xyxy[:, [0, 2]]
    if max_keep is not None or not bool(xs.max() - xs.min() <= max_wh):
        return nms(shifted, scores, iou_threshold, max_keep)  # one pass in score order: stops at max_keep
    if boxes_xyxy.shape[0] >= _SWEEP_MIN:  # one sweep over the shifted boxes: classes are apart along x
        order = torch.sort(scores, descending=True, stable=True).indices
        keep = _greedy_sweep(shifted[order], float(iou_threshold))
        if keep is not None:
            return order[keep]
    keep_parts = []
    for class_id in torch.unique(class_ids):
        index = (class_ids == class_id).nonzero().squeeze(1)  # ascending input order
        keep_parts.append(index[nms(shifted[index], scores[index], iou_threshold)])
    keep = torch.cat(keep_parts).sort().values  # input order, then a stable sort by score
    return keep[torch.sort(scores[keep], descending=True, stable=True).indices]


def _check_thresholds(conf: float, iou: float | None = None) -> None:
    if not 0.0 <= conf <= 1.0:
        raise ValueError(f"conf must be in [0, 1], got {conf}: pass e.g. conf=0.25")
    if iou is not None and not 0.0 <= iou <= 1.0:
        raise ValueError(f"iou must be in [0, 1], got {iou}: pass e.g. iou=0.7")


def _class_mask(class_column: torch.Tensor, classes: Sequence[int] | torch.Tensor) -> torch.Tensor:
    wanted = torch.as_tensor(classes, dtype=class_column.dtype, device=class_column.device).view(1, -1)
    return (class_column.view(-1, 1) == wanted).any(1)


def _detections(x: torch.Tensor, conf: float, multi_label: bool) -> torch.Tensor:
    """``(n, 4+nc)`` xywh + class scores -> ``(m, 6)`` xyxy, conf, class rows above ``conf``."""
    boxes = xywh2xyxy(x[:, :4])  # (n, 4)
    class_scores = x[:, 4:]  # (n, nc)
    if multi_label:
        rows, cols = (class_scores > conf).nonzero(as_tuple=True)
        return torch.cat((boxes[rows], class_scores[rows, cols, None], cols[:, None].float()), 1)
    best, cols = class_scores.max(1, keepdim=True)  # (n, 1) each
    return torch.cat((boxes, best, cols.float()), 1)[best.view(-1) > conf]


def non_max_suppression(
    pred: torch.Tensor,
    conf: float = 0.25,
    iou: float = 0.7,
    classes: Sequence[int] | torch.Tensor | None = None,
    agnostic: bool = False,
    max_det: int = 300,
    multi_label: bool = False,
    max_nms: int = 30000,
    max_wh: int = 7680,
) -> list[torch.Tensor]:
    """Turn raw one-to-many head output into final detections, per image.

    Args:
        pred: ``(B, 4+nc, A)`` xywh boxes (input pixels) and class probabilities (a tuple/list: its first item).
        conf: keep (box, class) pairs whose score is strictly greater than this.
        iou: NMS IoU threshold (suppress when IoU > iou).
        classes: keep only these class ids.
        agnostic: one NMS over all classes instead of one per class.
        max_det: keep at most this many boxes per image.
        multi_label: keep every (box, class) pair above ``conf`` (validation) instead of the best class only.
        max_nms: before NMS keep only the ``max_nms`` highest-scoring rows.
        max_wh: class offset in pixels that separates classes in the shared NMS.

    Returns:
        ``B`` float32 tensors ``(n, 6)`` ``[x1, y1, x2, y2, conf, cls]`` in input pixels, by decreasing conf.
    """
    if isinstance(pred, (list, tuple)):
        pred = pred[0]
    if not isinstance(pred, torch.Tensor) or pred.ndim != 3 or pred.shape[1] < 5:
        shape = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
        raise ValueError(f"non_max_suppression: expected pred of shape (B, 4+nc, A), got {shape}")
    _check_thresholds(conf, iou)
    pred = pred.float()
    is_candidate = pred[:, 4:].amax(1) > conf  # (B, A)
    output = []
    for image_pred, mask in zip(pred, is_candidate, strict=True):
        det = _detections(image_pred[:, mask].T, conf, multi_label)  # (m, 6)
        if classes is not None:
            det = det[_class_mask(det[:, 5], classes)]
        if det.shape[0] > max_nms:  # the max_nms best rows, kept in their original order
            det = det[det[:, 4].topk(max_nms, sorted=False).indices.sort().values]
        keep = batched_nms(det[:, :4], det[:, 4], det[:, 5], iou, 0 if agnostic else max_wh, max_keep=max_det)
        output.append(det[keep[:max_det]])
    return output


def filter_end2end(
    pred: torch.Tensor, conf: float = 0.25, classes: Sequence[int] | torch.Tensor | None = None, max_det: int = 300
) -> list[torch.Tensor]:
    """Filter end-to-end (NMS-free) output: rows with score > ``conf``, then the class filter, then ``max_det``.

    Args:
        pred: ``(B, K, 6)`` rows ``[x1, y1, x2, y2, score, class]`` sorted by decreasing score (a tuple/list: its
            first item).

    Returns:
        ``B`` float32 tensors ``(n, 6)`` in the same row format and order.
    """
    if isinstance(pred, (list, tuple)):
        pred = pred[0]
    if not isinstance(pred, torch.Tensor) or pred.ndim != 3 or pred.shape[2] != 6:
        shape = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
        raise ValueError(f"filter_end2end: expected pred of shape (B, K, 6), got {shape}")
    _check_thresholds(conf)
    output = []
    for det in pred.float():
        det = det[det[:, 4] > conf]
        if classes is not None:
            det = det[_class_mask(det[:, 5], classes)]
        output.append(det[:max_det])
    return output
