"""Detection losses: YOLOv8/11 (BCE + CIoU + DFL), reg_max=1 heads (BCE + CIoU + L1) and YOLO26's two-branch loss.

``loss(preds, batch) -> (total, items)``: ``preds`` is the model's train-mode output, ``batch`` the collated batch
(``cls (N, 1)``, ``bboxes (N, 4)`` normalised cxcywh, ``batch_idx (N,)``). ``total`` is the weighted sum of the
three terms times the batch size (what to call ``backward()`` on); ``items`` the three weighted terms, detached.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from yolokit.errors import ConfigError, DatasetError
from yolokit.losses.assigner import TaskAlignedAssigner
from yolokit.losses.box import BboxLoss
from yolokit.ops.anchors import dist2bbox, make_anchors
from yolokit.ops.boxes import xywh2xyxy

__all__ = ["DetectionLoss", "E2EDetectionLoss", "build_loss", "targets_from_batch"]

LossOutput = tuple[torch.Tensor, torch.Tensor]


def targets_from_batch(
    batch: Mapping[str, Any], batch_size: int, imgsz_hw: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Padded per-image ground truth from a collated batch.

    Args:
        batch: ``cls (N, 1)``, ``bboxes (N, 4)`` cxcywh normalised to ``[0, 1]``, ``batch_idx (N,)``.
        batch_size: ``B`` (images in the batch).
        imgsz_hw: ``(2,)`` input ``(height, width)`` in pixels.
        num_classes: class indices must lie in ``[0, num_classes)``.

    Returns:
        ``gt_labels (B, M, 1)``, ``gt_bboxes (B, M, 4)`` xyxy input pixels, ``mask_gt (B, M, 1)`` bool, with ``M``
        the largest box count of one image (0 when the batch has no boxes); boxes keep their order within an image.
    """
    device = imgsz_hw.device
    cls = batch["cls"].to(device).reshape(-1).float()
    boxes = batch["bboxes"].to(device).reshape(-1, 4).float()
    image = batch["batch_idx"].to(device).reshape(-1).long()
    n = cls.numel()
    if boxes.shape[0] != n or image.numel() != n:
        raise DatasetError(
            f"batch: expected cls, bboxes and batch_idx with one row per box, got {n}, {boxes.shape[0]} and "
            f"{image.numel()} rows; check the collate function"
        )
    if n and (int(image.min()) < 0 or int(image.max()) >= batch_size):
        found = f"{int(image.min())}..{int(image.max())}"
        raise DatasetError(f"batch: batch_idx must lie in [0, {batch_size}), got {found}; check the collate function")
    if n and (float(cls.min()) < 0 or float(cls.max()) >= num_classes):
        raise DatasetError(
            f"batch: class indices must lie in [0, {num_classes}) for this model, found {float(cls.min()):g}.."
            f"{float(cls.max()):g}; check the dataset's names against the model's class count"
        )
    counts = torch.bincount(image, minlength=batch_size)
    m = int(counts.max()) if n else 0
    gt_labels = torch.zeros(batch_size, m, 1, device=device)
    gt_bboxes = torch.zeros(batch_size, m, 4, device=device)
    mask_gt = torch.zeros(batch_size, m, 1, dtype=torch.bool, device=device)
    if n:
        order = torch.sort(image, stable=True).indices
        image = image[order]
        first = torch.cumsum(counts, 0) - counts  # (B,) row of each image's first box in sorted order
        slot = torch.arange(n, device=device) - first[image]
        scale = imgsz_hw.flip(0).repeat(2).float()  # (w, h, w, h)
        gt_labels[image, slot, 0] = cls[order]
        gt_bboxes[image, slot] = xywh2xyxy(boxes[order] * scale)
        mask_gt[image, slot, 0] = True
    return gt_labels, gt_bboxes, mask_gt


def _check_gain(name: str, value: Any) -> float:
    try:
        gain = float(value)
    except (TypeError, ValueError):
        gain = math.nan
    if not math.isfinite(gain) or gain < 0:
        raise ConfigError(f"loss gain {name}: expected a finite number >= 0, got {value!r}")
    return gain


class DetectionLoss:
    """Loss of one detection branch.

    Args:
        model: a ``DetectionModel`` or its ``Detect`` head (reads ``nc``, ``reg_max``, ``stride``).
        box, cls, dfl: gains of the CIoU, BCE and distance (DFL, or L1 when ``reg_max == 1``) terms.
        topk, topk2: assigner positives per GT (see :class:`TaskAlignedAssigner`).
        stal: small-target-aware assignment (GT sides below the second stride enlarged; the reference 8.4 applies it
            to every family).

    Terms, each divided by ``max(sum of target scores, 1)``: ``cls`` = BCE-with-logits of all anchors and classes
    against the soft targets, summed; ``box`` = ``(1 - CIoU)`` of each foreground anchor weighted by its target score;
    ``dfl`` = DFL (or normalised L1) of each foreground anchor, same weights.
    """

    def __init__(
        self, model: Any, box: float = 7.5, cls: float = 0.5, dfl: float = 1.5, topk: int = 10,
        topk2: int | None = None, stal: bool = True,
    ) -> None:
        head = getattr(model, "head", model)
        self.nc, self.reg_max = int(head.nc), int(head.reg_max)
        self.stride = head.stride.detach().float().cpu().clone()
        if self.stride.numel() == 0 or not bool((self.stride > 0).all()):
            raise ValueError(f"DetectionLoss: the head's strides must be set and positive, got {self.stride.tolist()}")
        self.gains = tuple(_check_gain(k, v) for k, v in (("box", box), ("cls", cls), ("dfl", dfl)))
        strides = self.stride.tolist()
        stal_size = (strides[1] if len(strides) > 1 else strides[0]) if stal else None
        self.assigner = TaskAlignedAssigner(topk, self.nc, alpha=0.5, beta=6.0, topk2=topk2, stal_size=stal_size)
        self.bbox_loss = BboxLoss(self.reg_max)

    @property
    def names(self) -> tuple[str, str, str]:
        """Names of the three logged items."""
        return ("box_loss", "cls_loss", "dfl_loss" if self.reg_max > 1 else "l1_loss")

    def decode(self, anchor_points: torch.Tensor, pred_dist: torch.Tensor) -> torch.Tensor:
        """``(B, A, 4 * reg_max)`` raw outputs -> ``(B, A, 4)`` xyxy boxes in grid units (expected bin for DFL)."""
        if self.reg_max > 1:
            b, a, _ = pred_dist.shape
            bins = torch.arange(self.reg_max, dtype=pred_dist.dtype, device=pred_dist.device)
            pred_dist = pred_dist.view(b, a, 4, self.reg_max).softmax(-1) @ bins  # (B, A, 4)
        return dist2bbox(pred_dist, anchor_points, xywh=False, dim=-1)

    def __call__(self, preds: Mapping[str, Any], batch: Mapping[str, Any]) -> LossOutput:
        """``(total, items)``: ``total = (box + cls + dfl) * B`` (gains applied), ``items`` detached ``(3,)``."""
        if not isinstance(preds, Mapping) or "scores" not in preds:
            found = sorted(preds) if isinstance(preds, Mapping) else type(preds).__name__
            raise ValueError(
                f"DetectionLoss: expected the train-mode head output {{boxes, scores, feats}}, got {found}; "
                "YOLO26 outputs (one2many/one2one) go to E2EDetectionLoss (build_loss picks it)"
            )
        feats = preds["feats"]
        pred_dist = preds["boxes"].float().permute(0, 2, 1)  # (B, A, 4 * reg_max)
        pred_logits = preds["scores"].float().permute(0, 2, 1)  # (B, A, nc)
        b, device = pred_logits.shape[0], pred_logits.device
        stride = self.stride.to(device)
        imgsz = torch.tensor(feats[0].shape[2:], device=device, dtype=torch.float32) * stride[0]  # (h, w)
        anchor_points, stride_tensor = (t.float() for t in make_anchors(feats, stride.tolist(), 0.5))
        gt_labels, gt_bboxes, mask_gt = targets_from_batch(batch, b, imgsz, self.nc)
        pred_bboxes = self.decode(anchor_points, pred_dist)  # (B, A, 4) grid units
        assigned = self.assigner(
            pred_logits.detach().sigmoid(), pred_bboxes.detach() * stride_tensor, anchor_points * stride_tensor,
            gt_labels, gt_bboxes, mask_gt,
        )
        target_scores_sum = target_sum_per_rank(assigned.target_scores.sum())
        loss_cls = F.binary_cross_entropy_with_logits(pred_logits, assigned.target_scores, reduction="none")
        loss_cls = loss_cls.sum() / target_scores_sum
        loss_box = loss_dist = pred_logits.new_zeros(())
        if bool(assigned.fg_mask.any()):
            loss_box, loss_dist = self.bbox_loss(
                pred_dist, pred_bboxes, anchor_points, assigned.target_bboxes / stride_tensor, assigned.target_scores,
                target_scores_sum, assigned.fg_mask, imgsz, stride_tensor,
            )
        box_gain, cls_gain, dfl_gain = self.gains
        items = torch.stack((loss_box * box_gain, loss_cls * cls_gain, loss_dist * dfl_gain))
        return items.sum() * b, items.detach()


def target_sum_per_rank(local_sum: torch.Tensor) -> torch.Tensor:
    """The loss normaliser ``max(sum of target scores, 1)``, of the **global** batch in a multi-process run.

    One process: ``local_sum.clamp(min=1)``. With ``torch.distributed`` initialised (``W`` ranks, each holding a
    share of the batch): ``max(all-reduced sum, 1) / W``, so that DDP's gradient average of ``W * loss`` (see
    :mod:`yolokit.train.distributed`) equals one process's gradient on the whole batch (every rank calls the loss
    once per step, so the all-reduce never waits for a rank that skips it).
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local_sum.clamp(min=1.0)
    total = local_sum.detach().clone()
    dist.all_reduce(total)
    return total.clamp(min=1.0) / dist.get_world_size()


class E2EDetectionLoss:
    """YOLO26's loss: ``w * L_one2many + (1 - w) * L_one2one`` ("ProgLoss"); the logged items are the one-to-one's.

    The one-to-many branch is assigned with ``topk=10``; the one-to-one branch with ``topk=7`` and then only the best
    anchor per GT (``topk2=1``). ``w`` starts at ``initial_weight`` (0.8) and decays linearly to ``final_weight``
    (0.1) at the last epoch: call :meth:`set_progress` at the start of every epoch.
    """

    def __init__(
        self, model: Any, box: float = 7.5, cls: float = 0.5, dfl: float = 1.5,
        initial_weight: float = 0.8, final_weight: float = 0.1,
    ) -> None:
        self.one2many = DetectionLoss(model, box, cls, dfl, topk=10)
        self.one2one = DetectionLoss(model, box, cls, dfl, topk=7, topk2=1)
        self.initial_weight, self.final_weight = float(initial_weight), float(final_weight)
        self.epoch, self.epochs = 0, 1
        self.o2m_weight = self.initial_weight

    @property
    def names(self) -> tuple[str, str, str]:
        """Names of the three logged (one-to-one) items."""
        return self.one2one.names

    def set_progress(self, epoch: int, epochs: int) -> None:
        """Set the one-to-many weight for ``epoch`` (0-based) of ``epochs``: ``max(1 - e/(E-1), 0) * 0.7 + 0.1``."""
        if epochs < 1 or epoch < 0:
            raise ValueError(f"set_progress: expected epoch >= 0 and epochs >= 1, got {epoch} and {epochs}")
        self.epoch, self.epochs = int(epoch), int(epochs)
        decay = max(1 - epoch / max(epochs - 1, 1), 0.0)
        self.o2m_weight = decay * (self.initial_weight - self.final_weight) + self.final_weight

    def state_dict(self) -> dict[str, float | int]:
        """The schedule position (``epoch``, ``epochs``) and the current weight."""
        return {"epoch": self.epoch, "epochs": self.epochs, "o2m_weight": self.o2m_weight}

    def load_state_dict(self, state: Mapping[str, float | int]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.epoch, self.epochs = int(state["epoch"]), int(state["epochs"])
        self.o2m_weight = float(state["o2m_weight"])

    def __call__(self, preds: Mapping[str, Any], batch: Mapping[str, Any]) -> LossOutput:
        """``(w * total_o2m + (1 - w) * total_o2o, items_o2o)``."""
        if not isinstance(preds, Mapping) or "one2one" not in preds or "one2many" not in preds:
            found = sorted(preds) if isinstance(preds, Mapping) else type(preds).__name__
            raise ValueError(f"E2EDetectionLoss: expected the YOLO26 train output {{one2many, one2one}}, got {found}")
        total_o2m, _ = self.one2many(preds["one2many"], batch)
        total_o2o, items = self.one2one(preds["one2one"], batch)
        w = self.o2m_weight
        return total_o2m * w + total_o2o * max(1.0 - w, 0.0), items


def build_loss(model: Any, hyp: Mapping[str, Any] | None = None) -> Any:
    """The loss for ``model``: :class:`E2EDetectionLoss` for a head with a one-to-one branch (YOLO26), else
    :class:`DetectionLoss` (DFL when ``reg_max > 1``, L1 when ``reg_max == 1``). ``hyp`` may hold the gains ``box``
    (7.5), ``cls`` (0.5) and ``dfl`` (1.5); other keys are ignored (a whole training config, as a mapping or a
    dataclass, can be passed). A YOLOv5 head (``AnchorDetect``) gets ``losses.yolov5.YOLOv5Loss`` with its own
    defaults (box 0.05, obj 1.0, cls 0.5, scaled by level count, class count and ``imgsz``); ``hyp`` keys ``box``,
    ``cls``, ``obj``, ``anchor_t``, ``imgsz``, ``label_smoothing`` override them."""
    if dataclasses.is_dataclass(hyp) and not isinstance(hyp, type):
        hyp = dataclasses.asdict(hyp)
    hyp = dict(hyp or {})
    gains = {k: hyp.get(k, default) for k, default in (("box", 7.5), ("cls", 0.5), ("dfl", 1.5))}
    head = getattr(model, "head", model)
    from yolokit.nn.yolov5 import AnchorDetect

    if isinstance(head, AnchorDetect):  # YOLOv5: its own loss and gains (losses/yolov5.py)
        from yolokit.losses.yolov5 import YOLOv5Loss

        v5 = {k: hyp[k] for k in ("box", "cls", "obj", "anchor_t", "imgsz", "label_smoothing") if k in hyp}
        return YOLOv5Loss(model, **v5)
    if getattr(head, "end2end", False):
        return E2EDetectionLoss(model, **gains)
    return DetectionLoss(model, **gains)
