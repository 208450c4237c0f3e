"""YOLOv5's anchor-based detection loss (objectness BCE + class BCE + CIoU), written from its published rules.

``loss(preds, batch) -> (total, items)`` with ``preds`` the train output of an ``AnchorDetect`` head (per level
``(B, na, H, W, 5 + nc)`` raw maps) and ``batch`` the collated batch (``cls (N, 1)``, ``bboxes (N, 4)`` normalised
cxcywh, ``batch_idx (N,)``). ``total = (box + obj + cls) * B``, ``items = (box, obj, cls)`` detached.

Target assignment (:func:`build_targets`), per level with grid ``H x W`` and anchors in grid units:

1. a ground-truth box (in grid units) is matched to every anchor whose width **and** height ratios ``r`` satisfy
   ``max(r, 1 / r) < anchor_t`` (4.0);
2. each match is predicted by the cell holding the box centre and by the two neighbouring cells nearest to the centre:
   the left (right) cell when the centre's x fraction is below (above) 0.5, the top (bottom) one likewise for y,
   provided the neighbour lies inside the grid (centre coordinate > 1 from that border);
3. the target box of a match is ``(centre - cell, w, h)`` in grid units.

Terms, per level ``i``: box ``mean(1 - CIoU)`` of the matched predictions (``xy = 2 sigmoid - 0.5`` from the cell,
``wh = (2 sigmoid)^2 * anchor``); objectness BCE over **all** predictions against the detached, clamped (>= 0) CIoU
of the matched ones (0 elsewhere), weighted by ``balance[i]`` (``[4.0, 1.0, 0.4]``; 4-5 levels
``[4.0, 1.0, 0.25, 0.06, 0.02]``); class BCE (mean over matched predictions and classes, one-hot targets, skipped
for one class). Gains ``box 0.05``, ``obj 1.0``, ``cls 0.5`` are scaled as the original's training script scales
them: all three by ``3 / nl``, ``cls`` by ``nc / 80`` and ``obj`` by ``(imgsz / 640)^2``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from yolokit.ops.iou import bbox_iou

__all__ = ["YOLOv5Loss", "build_targets", "scaled_gains"]

LossOutput = tuple[torch.Tensor, torch.Tensor]
_OFFSETS = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])  # (5, 2) x, y (times 0.5)


def scaled_gains(box: float, obj: float, cls: float, nl: int, nc: int, imgsz: int) -> tuple[float, float, float]:
    """``(box * 3/nl, obj * (imgsz/640)^2 * 3/nl, cls * nc/80 * 3/nl)``: the original training script's scaling."""
    layers = 3 / nl
    return box * layers, obj * (imgsz / 640) ** 2 * layers, cls * nc / 80 * layers


def build_targets(targets: torch.Tensor, anchors: torch.Tensor, shape_hw: tuple[int, int],
                  anchor_t: float = 4.0) -> dict[str, torch.Tensor]:
    """Matches of one level (see the module docstring).

    Args:
        targets: ``(N, 6)`` ``[image, class, cx, cy, w, h]`` with the box normalised to ``[0, 1]``.
        anchors: ``(na, 2)`` anchor sizes in grid units (pixels / stride).
        shape_hw: the level's grid ``(H, W)``.
        anchor_t: largest allowed width / height ratio between a box and an anchor.

    Returns:
        ``image``, ``anchor``, ``gj`` (row), ``gi`` (column), ``cls`` (all ``(M,)`` int64) and ``box`` ``(M, 4)``
        ``[x - gi, y - gj, w, h]`` in grid units.
    """
    h, w = shape_hw
    na, device = anchors.shape[0], targets.device
    gain = torch.tensor([1.0, 1.0, w, h, w, h], device=device)
    t = targets[None].float() * gain  # (1, N, 6)
    t = t.expand(na, -1, -1)  # (na, N, 6)
    a = torch.arange(na, device=device)[:, None].expand(na, targets.shape[0])  # (na, N)
    ratio = t[..., 4:6] / anchors[:, None]  # (na, N, 2)
    keep = torch.max(ratio, 1 / ratio).amax(-1) < anchor_t  # (na, N)
    t, a = t[keep], a[keep]  # (m, 6), (m,)
    xy = t[:, 2:4]
    inverse = torch.tensor([w, h], device=device, dtype=xy.dtype) - xy
    left_top = ((xy % 1 < 0.5) & (xy > 1)).T  # (2, m): neighbour to the left, above
    right_bottom = ((inverse % 1 < 0.5) & (inverse > 1)).T  # (2, m): to the right, below
    use = torch.cat((torch.ones_like(left_top[:1]), left_top, right_bottom))  # (5, m)
    t = t.repeat(5, 1, 1)[use]  # (M, 6)
    a = a.repeat(5, 1)[use]  # (M,)
    offsets = (_OFFSETS.to(device)[:, None] * 0.5).expand(5, use.shape[1], 2)[use]  # (M, 2)
    xy, wh = t[:, 2:4], t[:, 4:6]
    cell = (xy - offsets).long()
    gi, gj = cell[:, 0].clamp(0, w - 1), cell[:, 1].clamp(0, h - 1)
    box = torch.cat((xy - torch.stack((gi, gj), 1), wh), 1)  # (M, 4)
    return {"image": t[:, 0].long(), "anchor": a, "gj": gj, "gi": gi, "cls": t[:, 1].long(), "box": box}


class YOLOv5Loss:
    """The YOLOv5 loss for a model with an ``AnchorDetect`` head (see the module docstring).

    Args:
        model: a ``YOLOv5Model`` (or its head): ``nc``, ``nl``, ``na`` and the ``anchors`` buffer (grid units) are
            read from the head at every call (so the loss follows the model's device).
        box, obj, cls: the unscaled gains (0.05, 1.0, 0.5).
        anchor_t: anchor matching ratio (4.0).
        imgsz: training image size, for the objectness gain.
        label_smoothing: class targets ``1 - eps/2`` and ``eps/2`` instead of 1 and 0.
    """

    names = ("box_loss", "obj_loss", "cls_loss")

    def __init__(self, model: Any, box: float = 0.05, obj: float = 1.0, cls: float = 0.5, anchor_t: float = 4.0,
                 imgsz: int = 640, label_smoothing: float = 0.0) -> None:
        self.head = getattr(model, "head", model)
        self.nc, self.nl = int(self.head.nc), int(self.head.nl)
        self.box, self.obj, self.cls = scaled_gains(box, obj, cls, self.nl, self.nc, int(imgsz))
        self.anchor_t = float(anchor_t)
        self.balance = [4.0, 1.0, 0.4] if self.nl == 3 else [4.0, 1.0, 0.25, 0.06, 0.02][: self.nl]
        self.positive, self.negative = 1.0 - 0.5 * label_smoothing, 0.5 * label_smoothing

    def __call__(self, preds: list[torch.Tensor], batch: Mapping[str, Any]) -> LossOutput:
        if not isinstance(preds, (list, tuple)) or len(preds) != self.nl:
            found = type(preds).__name__ if not isinstance(preds, (list, tuple)) else f"{len(preds)} maps"
            raise ValueError(f"YOLOv5Loss: expected the train output of an AnchorDetect head ({self.nl} maps "
                             f"(B, na, H, W, 5 + nc)), got {found}")
        device = preds[0].device
        targets = torch.cat((batch["batch_idx"].to(device).view(-1, 1).float(),
                             batch["cls"].to(device).view(-1, 1).float(),
                             batch["bboxes"].to(device).view(-1, 4).float()), 1)  # (N, 6)
        zero = torch.zeros((), device=device)
        box_loss, obj_loss, cls_loss = zero, zero, zero
        for i, p in enumerate(preds):
            p = p.float()
            match = build_targets(targets, self.head.anchors[i].float(), tuple(p.shape[2:4]), self.anchor_t)
            tobj = torch.zeros(p.shape[:4], device=device)  # (B, na, H, W)
            if match["image"].numel():
                box_term, cls_term = self._matched_terms(p, match, i, tobj)
                box_loss, cls_loss = box_loss + box_term, cls_loss + cls_term
            obj_loss = obj_loss + F.binary_cross_entropy_with_logits(p[..., 4], tobj) * self.balance[i]
        box_loss, obj_loss, cls_loss = box_loss * self.box, obj_loss * self.obj, cls_loss * self.cls
        batch_size = preds[0].shape[0]
        total = (box_loss + obj_loss + cls_loss) * batch_size
        return total, torch.stack((box_loss, obj_loss, cls_loss)).detach()

    def _matched_terms(self, p: torch.Tensor, match: dict[str, torch.Tensor], level: int,
                       tobj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Box and class terms of the matched predictions; writes their IoU targets into ``tobj``."""
        index = (match["image"], match["anchor"], match["gj"], match["gi"])
        picked = p[index]  # (M, 5 + nc)
        xy = picked[:, :2].sigmoid() * 2 - 0.5
        wh = (picked[:, 2:4].sigmoid() * 2) ** 2 * self.head.anchors[level].float()[match["anchor"]]
        iou = bbox_iou(torch.cat((xy, wh), 1), match["box"], xywh=True, kind="ciou")  # (M,)
        tobj[index] = iou.detach().clamp(0).to(tobj.dtype)
        box_term = (1.0 - iou).mean()
        if self.nc == 1:
            return box_term, torch.zeros((), device=p.device)
        target = torch.full_like(picked[:, 5:], self.negative)  # (M, nc)
        target[torch.arange(target.shape[0], device=p.device), match["cls"]] = self.positive
        return box_term, F.binary_cross_entropy_with_logits(picked[:, 5:], target)
