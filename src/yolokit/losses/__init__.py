"""Training losses: task-aligned assignment, box terms (CIoU, DFL, L1) and the detection losses.

``build_loss(model, hyp)`` returns the loss for a model (see :mod:`yolokit.losses.detection`).
"""

from yolokit.losses.assigner import Assignment, TaskAlignedAssigner
from yolokit.losses.box import BboxLoss, bbox2dist, distribution_focal_loss
from yolokit.losses.detection import DetectionLoss, E2EDetectionLoss, build_loss, targets_from_batch

__all__ = [
    "Assignment",
    "TaskAlignedAssigner",
    "BboxLoss",
    "bbox2dist",
    "distribution_focal_loss",
    "DetectionLoss",
    "E2EDetectionLoss",
    "build_loss",
    "targets_from_batch",
]
