"""Task-aligned assignment (TOOD, Feng et al. 2021) of anchors to ground-truth boxes, as YOLOv8/11/26 train with.

Every (ground truth, anchor) pair gets an *alignment* ``t = s^alpha * u^beta`` from the anchor's predicted score ``s``
for the GT's class and the CIoU ``u`` (clamped at 0) between the anchor's predicted box and the GT box. An anchor is
a *candidate* of a GT when its centre lies strictly inside the GT box (small-target-aware assignment, "STAL": a GT
side shorter than ``stal_size`` pixels is first enlarged to ``stal_size`` around the box centre, so that tiny
objects still contain anchors). Then:

1. each GT takes the ``topk`` anchors of highest alignment (non-candidates count as 0) and keeps those that are
   its candidates (its *positives*);
2. an anchor that is a positive of several GTs goes to the one GT, among all GTs it is a candidate of, that its
   predicted box overlaps most (highest CIoU), even if that GT had not picked it; the other GTs lose it;
3. with ``topk2`` (YOLO26's one-to-one branch: ``topk=7, topk2=1``), each GT then keeps only its ``topk2`` positives
   of highest alignment;
4. a positive anchor's target is its GT's class and box, with the soft class score
   ``t * max_u / max_t``, where ``max_t`` and ``max_u`` are the highest alignment and CIoU among that GT's positives:
   the GT's best-aligned anchor is asked to score its best IoU, the others proportionally less. All other anchors are
   background (all class targets 0).

Ties: a GT with fewer than ``topk`` candidates of non-zero alignment (a CIoU <= 0) keeps only those zero-alignment
candidates that ``torch.topk`` happens to list first. Such anchors get target score 0 and add nothing to the loss; the
rule is kept because it reproduces the reference's assignment (and its loss values) exactly.

Example (one image, anchors on a stride-8 grid of a 32x32 input, one GT ``[0, 0, 16, 16]`` of class 1, every
predicted box equal to the GT): the candidates are the 4 anchors at ``(4|12, 4|12)``, all with ``u = 1``; if their
class-1 scores are 0.2, 0.4, 0.6 and 0.8, then ``t = s^0.5`` and with ``topk=10`` all 4 are positives with target
scores ``t * 1 / 0.8^0.5`` = 0.5, 0.707, 0.866 and 1.0 for class 1; with ``topk2=1`` only the 0.8 anchor stays.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from yolokit.ops.iou import bbox_iou

__all__ = ["Assignment", "TaskAlignedAssigner"]


class Assignment(NamedTuple):
    """Per-anchor targets. ``B`` images, ``A`` anchors, ``nc`` classes.

    - ``target_labels (B, A)`` long: class index of the assigned GT; ``nc`` for background anchors.
    - ``target_bboxes (B, A, 4)``: xyxy box of the assigned GT (input pixels); zeros for background.
    - ``target_scores (B, A, nc)``: soft one-hot class targets (normalised alignment); zeros for background.
    - ``fg_mask (B, A)`` bool: foreground (assigned) anchors.
    - ``target_gt_idx (B, A)`` long: index of the assigned GT along ``M``; ``-1`` for background.
    """

    target_labels: torch.Tensor
    target_bboxes: torch.Tensor
    target_scores: torch.Tensor
    fg_mask: torch.Tensor
    target_gt_idx: torch.Tensor


class TaskAlignedAssigner:
    """Assign anchors to ground truths by task alignment (see the module docstring for the rules and an example).

    Args:
        topk: positives kept per GT (10 for v8/v11/YOLO26 one-to-many, 7 for YOLO26 one-to-one).
        num_classes: number of classes ``nc``.
        alpha: exponent of the class score in the alignment.
        beta: exponent of the CIoU in the alignment.
        eps: inside-box margin (an anchor on the border is not inside) and the normalisation's guard.
        topk2: keep only this many positives per GT after resolving shared anchors (YOLO26 one-to-one: 1);
            None keeps ``topk``.
        stal_size: GT sides shorter than this (pixels) are enlarged to it for the candidate test (the reference uses
            the second stride, 16); None disables it.
        max_pairs: (GT, anchor) pairs handled at once; larger batches are assigned in chunks of images, which bounds
            the working memory to about ``40 * max_pairs`` bytes (80 MB at the default) besides the outputs,
            whatever ``B``, ``M`` and ``A`` are (measured: B=16, A=8400, M=100 peaks at ~190 MB of RSS with the
            outputs included).
    """

    def __init__(
        self,
        topk: int = 10,
        num_classes: int = 80,
        alpha: float = 0.5,
        beta: float = 6.0,
        eps: float = 1e-9,
        topk2: int | None = None,
        stal_size: float | None = None,
        max_pairs: int = 1 << 21,
    ) -> None:
        if topk < 1 or (topk2 is not None and topk2 < 1):
            raise ValueError(f"TaskAlignedAssigner: topk and topk2 must be >= 1, got {topk} and {topk2}")
        if num_classes < 1:
            raise ValueError(f"TaskAlignedAssigner: num_classes must be >= 1, got {num_classes}")
        self.topk, self.topk2, self.num_classes = topk, topk2, num_classes
        self.alpha, self.beta, self.eps = alpha, beta, eps
        self.stal_size = stal_size
        self.max_pairs = max_pairs

    @torch.no_grad()
    def __call__(
        self,
        pred_scores: torch.Tensor,
        pred_bboxes: torch.Tensor,
        anchor_points: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_bboxes: torch.Tensor,
        mask_gt: torch.Tensor,
    ) -> Assignment:
        """Assign ``A`` anchors of ``B`` images to up to ``M`` ground truths per image.

        Args:
            pred_scores: ``(B, A, nc)`` predicted class probabilities (after the sigmoid).
            pred_bboxes: ``(B, A, 4)`` predicted xyxy boxes, input pixels.
            anchor_points: ``(A, 2)`` anchor centres ``(x, y)``, input pixels.
            gt_labels: ``(B, M, 1)`` class indices (any value on padding rows).
            gt_bboxes: ``(B, M, 4)`` xyxy boxes, input pixels (any value on padding rows).
            mask_gt: ``(B, M, 1)`` 1 for real boxes, 0 for padding.

        Returns:
            An :class:`Assignment` (a tuple ``target_labels, target_bboxes, target_scores, fg_mask, target_gt_idx``).
        """
        b, a, _ = pred_scores.shape
        m = gt_bboxes.shape[1]
        valid = mask_gt.view(b, m).bool()
        if m == 0 or not bool(valid.any()):
            return self._background(pred_scores)
        chunk = max(1, self.max_pairs // (m * a))
        if chunk >= b:
            return self._assign(pred_scores, pred_bboxes, anchor_points, gt_labels, gt_bboxes, valid)
        result = self._background(pred_scores)
        for i in range(0, b, chunk):
            rows = slice(i, i + chunk)
            part = self._assign(pred_scores[rows], pred_bboxes[rows], anchor_points, gt_labels[rows], gt_bboxes[rows],
                                valid[rows])
            for whole, piece in zip(result, part, strict=True):
                whole[rows] = piece
        return result

    def _background(self, pred_scores: torch.Tensor) -> Assignment:
        b, a, nc = pred_scores.shape
        device = pred_scores.device
        return Assignment(
            torch.full((b, a), nc, dtype=torch.long, device=device),
            torch.zeros((b, a, 4), dtype=pred_scores.dtype, device=device),
            torch.zeros_like(pred_scores),
            torch.zeros((b, a), dtype=torch.bool, device=device),
            torch.full((b, a), -1, dtype=torch.long, device=device),
        )

    def candidates(self, anchor_points: torch.Tensor, gt_bboxes: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``(B, M, A)`` bool: anchor centre strictly inside the (STAL-enlarged) GT box, padding rows excluded."""
        boxes = gt_bboxes
        if self.stal_size:
            centre, size = (boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]
            size = size.clamp(min=float(self.stal_size))
            boxes = torch.cat((centre - size / 2, centre + size / 2), dim=-1)
        x, y = anchor_points[:, 0], anchor_points[:, 1]  # (A,)
        x1, y1, x2, y2 = (boxes[..., i, None] for i in range(4))  # (B, M, 1) each
        margin = x - x1  # (B, M, A): the smallest of the 4 distances to the sides, computed in place
        for side in (y - y1, x2 - x, y2 - y):
            torch.minimum(margin, side, out=margin)
        return (margin > self.eps) & valid[..., None]

    def _pair_metrics(self, pred_scores, pred_bboxes, labels, gt_bboxes, inside):
        """Dense ``(B, M, A)`` CIoU and alignment, computed on the candidate pairs only (zeros elsewhere)."""
        bi, mi, ai = inside.nonzero(as_tuple=True)
        overlaps = torch.zeros(inside.shape, dtype=pred_bboxes.dtype, device=pred_bboxes.device)
        align = torch.zeros_like(overlaps)
        iou = bbox_iou(gt_bboxes[bi, mi], pred_bboxes[bi, ai], kind="ciou").clamp_(min=0)
        score = pred_scores[bi, ai, labels[bi, mi]].to(overlaps.dtype)
        overlaps[bi, mi, ai] = iou
        align[bi, mi, ai] = score.pow(self.alpha) * iou.pow(self.beta)
        return overlaps, align

    @staticmethod
    def _top(metric: torch.Tensor, allowed: torch.Tensor, k: int) -> torch.Tensor:
        """``(B, M, A)`` bool: per GT, the ``k`` anchors of highest ``metric`` (0 where not allowed), if allowed."""
        index = (metric * allowed).topk(min(k, metric.shape[-1]), dim=-1).indices  # (B, M, k)
        chosen = torch.zeros_like(allowed).scatter_(-1, index, True)
        return chosen & allowed

    def _assign(self, pred_scores, pred_bboxes, anchor_points, gt_labels, gt_bboxes, valid) -> Assignment:
        b, a, nc = pred_scores.shape
        m = gt_bboxes.shape[1]
        labels = gt_labels.view(b, m).long().clamp(0, nc - 1)  # padding rows may hold anything
        inside = self.candidates(anchor_points, gt_bboxes, valid)
        overlaps, align = self._pair_metrics(pred_scores, pred_bboxes, labels, gt_bboxes, inside)
        positive = self._top(align, inside, self.topk)  # (B, M, A)
        shared = positive.sum(1) > 1  # (B, A)
        if bool(shared.any()):
            best = overlaps.masked_fill(~inside, -1.0).argmax(1)  # (B, A) among the GTs that contain the anchor
            only_best = torch.zeros_like(positive).scatter_(1, best[:, None], True)  # (B, M, A)
            positive = torch.where(shared[:, None], only_best, positive)
        if self.topk2 is not None and self.topk2 < self.topk:
            positive = self._top(align, positive, self.topk2)
        return self._targets(positive, overlaps, align, labels, gt_bboxes, nc)

    def _targets(self, positive, overlaps, align, labels, gt_bboxes, nc) -> Assignment:
        fg_mask = positive.any(1)  # (B, A)
        gt_idx = positive.to(torch.uint8).argmax(1)  # (B, A); 0 where background
        target_labels = torch.where(fg_mask, labels.gather(1, gt_idx), nc)
        target_bboxes = gt_bboxes.gather(1, gt_idx[..., None].expand(-1, -1, 4)) * fg_mask[..., None]
        align = align * positive
        max_align = align.amax(-1, keepdim=True)  # (B, M, 1)
        max_iou = (overlaps * positive).amax(-1, keepdim=True)  # (B, M, 1)
        norm = (align * max_iou / (max_align + self.eps)).amax(1)  # (B, A)
        target_scores = torch.zeros((*fg_mask.shape, nc), dtype=overlaps.dtype, device=overlaps.device)
        target_scores.scatter_(-1, target_labels.clamp(max=nc - 1)[..., None], (norm * fg_mask)[..., None])
        target_gt_idx = torch.where(fg_mask, gt_idx, -1)
        return Assignment(target_labels, target_bboxes, target_scores, fg_mask, target_gt_idx)
