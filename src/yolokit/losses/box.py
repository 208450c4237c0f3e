"""Box-regression terms: CIoU, distribution focal loss (DFL, ``reg_max > 1``) and the L1 term (``reg_max == 1``).

Units: the head regresses ltrb distances from an anchor point in *stride units* (grid units of the anchor's own
level); anchor points and boxes passed here are in the same grid units (pixels divided by the anchor's stride).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from yolokit.ops.iou import bbox_iou

__all__ = ["bbox2dist", "distribution_focal_loss", "BboxLoss"]


def bbox2dist(anchor_points: torch.Tensor, boxes_xyxy: torch.Tensor, max_dist: float | None = None) -> torch.Tensor:
    """Inverse of ``dist2bbox``: ltrb distances ``(..., 4)`` from ``anchor_points (..., 2)`` to ``boxes_xyxy (..., 4)``.

    With ``max_dist`` the distances are clamped to ``[0, max_dist - 0.01]`` (DFL targets must stay strictly below the
    last bin so that the right neighbour bin exists); without it they are returned unclamped (may be negative for an
    anchor outside its box, e.g. a small-target-aware assignment).
    """
    dist = torch.cat((anchor_points - boxes_xyxy[..., :2], boxes_xyxy[..., 2:] - anchor_points), dim=-1)
    if max_dist is not None:
        dist = dist.clamp(0, max_dist - 0.01)
    return dist


def distribution_focal_loss(pred_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DFL (Li et al. 2020): cross-entropy towards the two bins around a continuous target, linearly weighted.

    Args:
        pred_logits: ``(N, 4, reg_max)`` bin logits of the 4 sides of N anchors.
        target: ``(N, 4)`` target distances in ``[0, reg_max - 1)`` (see :func:`bbox2dist` with ``max_dist``).

    Returns:
        ``(N,)``: the mean over the 4 sides of ``CE(left) * (right - t) + CE(right) * (t - left)`` where
        ``left = floor(t)``, ``right = left + 1``. Example: ``t = 2.25`` -> ``0.75 * CE(bin 2) + 0.25 * CE(bin 3)``.
    """
    n, sides, bins = pred_logits.shape
    left = target.long()  # (N, 4)  floor: targets are >= 0
    weight_left = left + 1 - target
    logits = pred_logits.reshape(-1, bins)
    ce_left = F.cross_entropy(logits, left.view(-1), reduction="none").view(n, sides)
    ce_right = F.cross_entropy(logits, (left + 1).view(-1), reduction="none").view(n, sides)
    return (ce_left * weight_left + ce_right * (1 - weight_left)).mean(-1)


class BboxLoss(nn.Module):
    """``(1 - CIoU)`` and the distance term (DFL if ``reg_max > 1``, else normalised L1) of the foreground anchors.

    Each foreground anchor is weighted by the sum of its target scores (the normalised alignment of its assigned
    ground truth); both terms are divided by ``target_scores_sum``.
    """

    def __init__(self, reg_max: int = 16) -> None:
        super().__init__()
        if reg_max < 1:
            raise ValueError(f"BboxLoss: reg_max must be >= 1, got {reg_max}")
        self.reg_max = reg_max

    def forward(
        self,
        pred_dist: torch.Tensor,
        pred_bboxes: torch.Tensor,
        anchor_points: torch.Tensor,
        target_bboxes: torch.Tensor,
        target_scores: torch.Tensor,
        target_scores_sum: torch.Tensor,
        fg_mask: torch.Tensor,
        imgsz: torch.Tensor,
        stride: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(iou_loss, dist_loss)`` scalars.

        Args:
            pred_dist: ``(B, A, 4 * reg_max)`` raw box outputs (DFL logits, or ltrb distances when ``reg_max == 1``).
            pred_bboxes: ``(B, A, 4)`` decoded xyxy boxes, grid units.
            anchor_points: ``(A, 2)`` anchor centres, grid units.
            target_bboxes: ``(B, A, 4)`` assigned xyxy boxes, grid units.
            target_scores: ``(B, A, nc)`` soft class targets from the assigner.
            target_scores_sum: scalar normaliser (``max(target_scores.sum(), 1)``).
            fg_mask: ``(B, A)`` bool foreground anchors.
            imgsz: ``(2,)`` input ``(height, width)`` in pixels (the L1 term's normaliser).
            stride: ``(A, 1)`` stride of each anchor (pixels per grid unit).

        The L1 term (``reg_max == 1``): predicted and target ltrb distances times the stride, divided by the image
        width (l, r) or height (t, b), ``|pred - target|`` averaged over the 4 sides.
        """
        weight = target_scores.sum(-1)[fg_mask]  # (F,)
        iou = bbox_iou(pred_bboxes[fg_mask], target_bboxes[fg_mask], kind="ciou")  # (F,)
        loss_iou = ((1.0 - iou) * weight).sum() / target_scores_sum
        if self.reg_max > 1:
            target = bbox2dist(anchor_points, target_bboxes, self.reg_max - 1)[fg_mask]  # (F, 4)
            logits = pred_dist[fg_mask].view(-1, 4, self.reg_max)
            loss_dist = (distribution_focal_loss(logits, target) * weight).sum() / target_scores_sum
            return loss_iou, loss_dist
        scale = stride / imgsz.flip(0).repeat(2).to(pred_dist)  # (A, 4): stride / (w, h, w, h)
        target = bbox2dist(anchor_points, target_bboxes) * scale  # (B, A, 4)
        pred = pred_dist * scale
        l1 = (pred[fg_mask] - target[fg_mask]).abs().mean(-1)  # (F,)
        return loss_iou, (l1 * weight).sum() / target_scores_sum
