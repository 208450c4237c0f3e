"""Box format conversions, IoU, clipping and the letterbox scale-back.

Box vocabulary (the same words everywhere in yolokit): ``xyxy`` is ``(x1, y1, x2, y2)`` (top-left, bottom-right
corners); ``xywh`` is ``(cx, cy, w, h)`` (centre, width, height: the YOLO label and head format); ``ltwh`` is COCO's
``[x, y, w, h]`` (top-left corner, width, height; COCO json only); an ``n`` suffix (``xywhn``, ``xyxyn``) means
normalised by the image width (x) and height (y); ``ltrb`` are the head's distances from an anchor point to the four
sides (not a box). Pixels unless normalised. Functions accept ``torch.Tensor`` or ``numpy.ndarray`` boxes with the 4
coordinates in the last dimension (extra trailing columns such as score/class are allowed where stated), never
modify their input, and return the same array type.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch

__all__ = ["xywh2xyxy", "xyxy2xywh", "box_area", "box_iou", "clip_boxes", "scale_boxes", "letterbox_pad"]

BoxArray = TypeVar("BoxArray", torch.Tensor, np.ndarray)


def _check_boxes(boxes: torch.Tensor | np.ndarray, name: str, min_cols: int = 4) -> None:
    if not isinstance(boxes, (torch.Tensor, np.ndarray)):
        raise TypeError(f"{name}: expected a torch.Tensor or numpy.ndarray, got {type(boxes).__name__}")
    if boxes.ndim < 1 or boxes.shape[-1] < min_cols:
        raise ValueError(f"{name}: expected boxes of shape (..., {min_cols}), got {tuple(boxes.shape)}")


def _copy(boxes: BoxArray) -> BoxArray:
    if isinstance(boxes, torch.Tensor):
        return boxes.clone() if boxes.is_floating_point() else boxes.float()
    return boxes.copy() if np.issubdtype(boxes.dtype, np.floating) else boxes.astype(np.float32)


def xywh2xyxy(boxes: BoxArray) -> BoxArray:
    """Convert ``(..., 4)`` centre boxes ``(cx, cy, w, h)`` to corner boxes ``(x1, y1, x2, y2)``."""
    _check_boxes(boxes, "xywh2xyxy")
    if boxes.shape[-1] != 4:
        raise ValueError(f"xywh2xyxy: expected boxes of shape (..., 4), got {tuple(boxes.shape)}")
    out = _copy(boxes)
    half_w, half_h = boxes[..., 2] / 2, boxes[..., 3] / 2
    out[..., 0] = boxes[..., 0] - half_w
    out[..., 1] = boxes[..., 1] - half_h
    out[..., 2] = boxes[..., 0] + half_w
    out[..., 3] = boxes[..., 1] + half_h
    return out


def xyxy2xywh(boxes: BoxArray) -> BoxArray:
    """Convert ``(..., 4)`` corner boxes ``(x1, y1, x2, y2)`` to centre boxes ``(cx, cy, w, h)``."""
    _check_boxes(boxes, "xyxy2xywh")
    if boxes.shape[-1] != 4:
        raise ValueError(f"xyxy2xywh: expected boxes of shape (..., 4), got {tuple(boxes.shape)}")
    out = _copy(boxes)
    out[..., 0] = (boxes[..., 0] + boxes[..., 2]) / 2
    out[..., 1] = (boxes[..., 1] + boxes[..., 3]) / 2
    out[..., 2] = boxes[..., 2] - boxes[..., 0]
    out[..., 3] = boxes[..., 3] - boxes[..., 1]
    return out


def box_area(boxes_xyxy: torch.Tensor) -> torch.Tensor:
    """Area ``(N,)`` of ``(N, 4)`` xyxy boxes (negative widths/heights are not clamped, as in torchvision)."""
    _check_boxes(boxes_xyxy, "box_area")
    return (boxes_xyxy[..., 2] - boxes_xyxy[..., 0]) * (boxes_xyxy[..., 3] - boxes_xyxy[..., 1])


def box_iou(boxes1_xyxy: torch.Tensor, boxes2_xyxy: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Pairwise intersection over union of two sets of xyxy boxes.

    Args:
        boxes1_xyxy: ``(N, 4)`` boxes.
        boxes2_xyxy: ``(M, 4)`` boxes.
        eps: added to the union (0 keeps the exact quotient; pass e.g. 1e-7 to avoid 0/0 on degenerate boxes).

    Returns:
        ``(N, M)`` IoU values in ``[0, 1]``; ``inter / (area1 + area2 - inter)``.
    """
    for name, boxes in (("boxes1_xyxy", boxes1_xyxy), ("boxes2_xyxy", boxes2_xyxy)):
        if not isinstance(boxes, torch.Tensor) or boxes.ndim != 2 or boxes.shape[1] != 4:
            shape = tuple(boxes.shape) if hasattr(boxes, "shape") else type(boxes).__name__
            raise ValueError(f"box_iou: expected {name} as a tensor of shape (N, 4), got {shape}")
    area1 = box_area(boxes1_xyxy)  # (N,)
    area2 = box_area(boxes2_xyxy)  # (M,)
    top_left = torch.maximum(boxes1_xyxy[:, None, :2], boxes2_xyxy[None, :, :2])  # (N, M, 2)
    bottom_right = torch.minimum(boxes1_xyxy[:, None, 2:], boxes2_xyxy[None, :, 2:])  # (N, M, 2)
    wh = (bottom_right - top_left).clamp_(min=0)  # (N, M, 2)
    inter = wh[..., 0] * wh[..., 1]  # (N, M)
    return inter / (area1[:, None] + area2[None, :] - inter + eps)


def clip_boxes(boxes: BoxArray, shape_hw: Sequence[int]) -> BoxArray:
    """Clip xyxy boxes to an image of size ``shape_hw = (height, width)``.

    ``boxes`` is ``(..., >=4)``; only the first 4 columns (x1, y1, x2, y2) are clipped, x to ``[0, width]`` and y to
    ``[0, height]``. Returns a new array; the input is left unchanged.
    """
    _check_boxes(boxes, "clip_boxes")
    height, width = int(shape_hw[0]), int(shape_hw[1])
    out = _copy(boxes)
    for column, limit in ((0, width), (1, height), (2, width), (3, height)):
        if isinstance(out, torch.Tensor):
            out[..., column].clamp_(0, limit)
        else:
            np.clip(out[..., column], 0, limit, out=out[..., column])
    return out


def letterbox_pad(from_shape_hw: Sequence[int], to_shape_hw: Sequence[int]) -> tuple[float, tuple[int, int]]:
    """Gain and ``(pad_x, pad_y)`` of the letterbox that mapped an image of ``to_shape_hw`` into ``from_shape_hw``.

    ``gain = min(h1 / h0, w1 / w0)``; the resized size is ``round(w0 * gain), round(h0 * gain)`` and the pad is
    ``round((w1 - new_w) / 2 - 0.1)`` (same for y), with Python's ``round`` as in the letterbox itself.
    """
    h1, w1 = int(from_shape_hw[0]), int(from_shape_hw[1])
    h0, w0 = int(to_shape_hw[0]), int(to_shape_hw[1])
    if min(h0, w0, h1, w1) <= 0:
        raise ValueError(f"letterbox_pad: shapes must be positive, got from {(h1, w1)} to {(h0, w0)}")
    gain = min(h1 / h0, w1 / w0)
    pad_x = round((w1 - round(w0 * gain)) / 2 - 0.1)
    pad_y = round((h1 - round(h0 * gain)) / 2 - 0.1)
    return gain, (pad_x, pad_y)


def scale_boxes(
    boxes: BoxArray,
    from_shape_hw: Sequence[int] | None,
    to_shape_hw: Sequence[int],
    ratio_pad: tuple[Sequence[float], Sequence[float]] | None = None,
    padding: bool = True,
) -> BoxArray:
    """Map xyxy boxes from a letterboxed image back to the original image, then clip: the one letterbox undo.

    Args:
        boxes: ``(..., >=4)`` xyxy boxes in pixels of the letterboxed image; extra columns are copied unchanged.
        from_shape_hw: ``(h1, w1)`` of the letterboxed (network input) image (only read when ``ratio_pad`` is None).
        to_shape_hw: ``(h0, w0)`` of the original image.
        ratio_pad: ``((gain_y, gain_x), (pad_x, pad_y))`` as recorded when the image was letterboxed: the gains in
            ``(h, w)`` order like the shapes (``(r, r)`` from :func:`yolokit.data.transforms.letterbox`; per-axis
            after a resize that rounds each side, as in validation and training), the pixel offset in ``(x, y)``
            order like the letterbox returns it. When None both are recomputed from the shapes (see
            :func:`letterbox_pad`).
        padding: False when the image was resized without padding (only the gain is undone).

    Returns:
        New boxes ``(x - pad_x) / gain_x``, ``(y - pad_y) / gain_y``, clipped to ``(h0, w0)``.
    """
    _check_boxes(boxes, "scale_boxes")
    if ratio_pad is None:
        if from_shape_hw is None:
            raise ValueError("scale_boxes: pass from_shape_hw (the letterboxed image's (h, w)) or ratio_pad")
        gain, (pad_x, pad_y) = letterbox_pad(from_shape_hw, to_shape_hw)
        gain_y = gain_x = gain
    else:
        (gain_y, gain_x), (pad_x, pad_y) = (float(ratio_pad[0][0]), float(ratio_pad[0][1])), ratio_pad[1][:2]
    out = _copy(boxes)
    for column, pad, gain in ((0, pad_x, gain_x), (1, pad_y, gain_y), (2, pad_x, gain_x), (3, pad_y, gain_y)):
        if padding:
            out[..., column] -= pad
        out[..., column] /= gain
    return clip_boxes(out, to_shape_hw)
