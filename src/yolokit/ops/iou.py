"""Element-wise IoU of paired boxes and its GIoU / DIoU / CIoU variants (the box-regression overlaps).

Unlike :func:`yolokit.ops.boxes.box_iou` (all pairs of two sets, ``(N, M)``), :func:`bbox_iou` compares box ``i`` of
the first tensor with box ``i`` of the second (with broadcasting), which is what a regression loss and an assigner
scoring (GT, anchor) pairs need.

Definitions for boxes ``b1``, ``b2`` (Rezatofighi et al. 2019 for GIoU; Zheng et al. 2020 for DIoU / CIoU):
- ``iou = inter / union``
- ``giou = iou - (C - union) / C``, ``C`` the area of the smallest box enclosing both;
- ``diou = iou - rho^2 / c^2``, ``rho`` the distance between the centres, ``c`` the diagonal of the enclosing box;
- ``ciou = diou - alpha * v``, ``v = 4 / pi^2 * (atan(w2 / h2) - atan(w1 / h1))^2`` (aspect-ratio consistency) and
  ``alpha = v / (v - iou + 1)`` treated as a constant (no gradient flows through it).
"""

from __future__ import annotations

import math

import torch

__all__ = ["bbox_iou", "IOU_KINDS"]

IOU_KINDS = ("iou", "giou", "diou", "ciou")


def _corners(boxes: torch.Tensor, xywh: bool) -> tuple[torch.Tensor, ...]:
    if xywh:
        cx, cy, w, h = boxes.unbind(-1)
        return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    return boxes.unbind(-1)


def bbox_iou(
    box1: torch.Tensor, box2: torch.Tensor, xywh: bool = False, kind: str = "iou", eps: float = 1e-7
) -> torch.Tensor:
    """Overlap of paired boxes.

    Args:
        box1: ``(..., 4)`` boxes, ``(x1, y1, x2, y2)`` or ``(cx, cy, w, h)`` if ``xywh``.
        box2: ``(..., 4)`` boxes in the same format, broadcastable against ``box1``.
        xywh: the boxes are centre/size instead of corners.
        kind: ``"iou"``, ``"giou"``, ``"diou"`` or ``"ciou"`` (see the module docstring).
        eps: added to the heights, the union, the enclosing area and the squared diagonal (no 0/0 on degenerate
            boxes).

    Returns:
        ``(...)`` overlaps (the broadcast shape without the last axis): IoU in ``[0, 1]``; GIoU in ``(-1, 1]``;
        DIoU and CIoU in ``(-1, 1]``. Example: ``[0, 0, 2, 2]`` vs ``[1, 0, 3, 2]`` -> IoU ``2 / 6``, DIoU
        ``1/3 - 1/13`` (centres 1 apart, enclosing diagonal^2 = 9 + 4), CIoU equal to the DIoU (same aspect).
    """
    if kind not in IOU_KINDS:
        raise ValueError(f"bbox_iou: kind must be one of {IOU_KINDS}, got {kind!r}")
    if box1.shape[-1] != 4 or box2.shape[-1] != 4:
        raise ValueError(f"bbox_iou: expected boxes of shape (..., 4), got {tuple(box1.shape)} and {tuple(box2.shape)}")
    b1x1, b1y1, b1x2, b1y2 = _corners(box1, xywh)
    b2x1, b2y1, b2x2, b2y2 = _corners(box2, xywh)
    w1, h1 = b1x2 - b1x1, b1y2 - b1y1 + eps
    w2, h2 = b2x2 - b2x1, b2y2 - b2y1 + eps
    inter = (torch.minimum(b1x2, b2x2) - torch.maximum(b1x1, b2x1)).clamp(min=0) * (
        torch.minimum(b1y2, b2y2) - torch.maximum(b1y1, b2y1)
    ).clamp(min=0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    if kind == "iou":
        return iou
    enclose_w = torch.maximum(b1x2, b2x2) - torch.minimum(b1x1, b2x1)
    enclose_h = torch.maximum(b1y2, b2y2) - torch.minimum(b1y1, b2y1)
    if kind == "giou":
        enclose_area = enclose_w * enclose_h + eps
        return iou - (enclose_area - union) / enclose_area
    diagonal2 = enclose_w**2 + enclose_h**2 + eps
    centre_dist2 = ((b2x1 + b2x2 - b1x1 - b1x2) ** 2 + (b2y1 + b2y2 - b1y1 - b1y2) ** 2) / 4
    if kind == "diou":
        return iou - centre_dist2 / diagonal2
    v = (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (centre_dist2 / diagonal2 + alpha * v)
