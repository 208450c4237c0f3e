"""Letterbox resizing and batching of BGR images into the network input tensor.

The letterbox keeps the aspect ratio: the image is scaled by ``r = min(H / h, W / w)`` and padded with grey (114)
to ``(H, W)``, or, with ``auto=True``, only up to the next multiple of the stride (minimal rectangle). The padding
is split with ``top = round(dh - 0.1)``, ``bottom = round(dh + 0.1)`` (same for left/right), the rounding rules that
:func:`yolokit.ops.boxes.scale_boxes` inverts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["letterbox", "preprocess", "check_imgsz"]

logger = logging.getLogger(__name__)


def check_imgsz(imgsz: int | Sequence[int], stride: int = 32) -> tuple[int, int]:
    """``imgsz`` (int or ``(h, w)``) as ``(h, w)`` rounded up to multiples of ``stride`` (with a warning)."""
    if isinstance(imgsz, (int, np.integer)) and not isinstance(imgsz, bool):
        size = (int(imgsz), int(imgsz))
    elif isinstance(imgsz, Sequence) and len(imgsz) in (1, 2) and all(isinstance(v, (int, np.integer)) for v in imgsz):
        size = (int(imgsz[0]), int(imgsz[-1]))
    else:
        raise ValueError(f"imgsz must be an int or (height, width), got {imgsz!r}: pass e.g. imgsz=640")
    if min(size) <= 0:
        raise ValueError(f"imgsz must be positive, got {imgsz!r}: pass e.g. imgsz=640")
    stride = max(int(stride), 1)
    rounded = (math.ceil(size[0] / stride) * stride, math.ceil(size[1] / stride) * stride)
    if rounded != size:
        logger.warning("imgsz=%s is not a multiple of the max stride %d, using %s", imgsz, stride, rounded)
    return rounded


def letterbox(
    image: np.ndarray,
    new_shape: int | Sequence[int] = (640, 640),
    auto: bool = False,
    stride: int = 32,
    scaleup: bool = True,
    center: bool = True,
    pad_value: int = 114,
) -> tuple[np.ndarray, tuple[float, float], tuple[int, int]]:
    """Resize ``image`` keeping its aspect ratio and pad it to ``new_shape``.

    Args:
        image: ``(h, w, C)`` (or ``(h, w)``) uint8 image.
        new_shape: target ``(H, W)`` (an int means square).
        auto: pad only up to a multiple of ``stride`` (minimal rectangle) instead of to ``(H, W)``.
        stride: the model's max stride (used with ``auto``).
        scaleup: allow ``r > 1``; False only shrinks (validation).
        center: split the padding on both sides; False puts it all at the bottom/right.
        pad_value: grey level of the padding.

    Returns:
        ``(padded_image, (r, r), (left, top))``: the letterboxed image, the scale ratio applied, and the integer
        pixel offset of the resized image inside the padded one (the ``ratio_pad`` of :func:`scale_boxes`).
    """
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or min(image.shape[:2]) <= 0:
        shape = tuple(image.shape) if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"letterbox: expected an (h, w, C) image array, got {shape}")
    import cv2

    target_h, target_w = (new_shape, new_shape) if isinstance(new_shape, int) else (new_shape[0], new_shape[1])
    h, w = image.shape[:2]
    r = min(target_h / h, target_w / w)
    if not scaleup:
        r = min(r, 1.0)
    new_w, new_h = round(w * r), round(h * r)
    dw, dh = target_w - new_w, target_h - new_h
    if auto:
        dw, dh = dw % stride, dh % stride
    if center:
        dw, dh = dw / 2, dh / 2
    if (w, h) != (new_w, new_h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = (round(dh - 0.1), round(dh + 0.1)) if center else (0, round(dh))
    left, right = (round(dw - 0.1), round(dw + 0.1)) if center else (0, round(dw))
    if top or bottom or left or right:
        channels = image.shape[2] if image.ndim == 3 else 1
        image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(pad_value,) * channels)
    return image, (r, r), (left, top)


def preprocess(
    images: Sequence[np.ndarray], imgsz: int | Sequence[int], stride: int = 32, auto: bool = True
) -> torch.Tensor:
    """Letterbox a list of BGR uint8 images and stack them into the network input.

    Args:
        images: ``B`` BGR uint8 arrays ``(h_i, w_i, 3)``.
        imgsz: target size, int or ``(h, w)`` (rounded up to a multiple of ``stride``).
        stride: the model's max stride.
        auto: the backend accepts any multiple of ``stride`` (dynamic shapes). The minimal rectangle is used only
            when this is True AND all images share one shape; otherwise every image becomes exactly ``imgsz``.

    Returns:
        ``(B, 3, H, W)`` float32 RGB tensor in ``[0, 1]``.
    """
    if len(images) == 0:
        raise ValueError("preprocess: expected at least one image, got an empty list")
    for image in images:
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            found = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(f"preprocess: expected BGR uint8 images of shape (h, w, 3), got {found}")
    size = check_imgsz(imgsz, stride)
    same_shape = len({image.shape for image in images}) == 1
    boxed = [letterbox(image, size, auto=auto and same_shape, stride=stride)[0] for image in images]
    batch = np.empty((len(boxed), 3, *boxed[0].shape[:2]), dtype=np.uint8)  # (B, 3, H, W) RGB
    for index, image in enumerate(boxed):
        batch[index] = image.transpose(2, 0, 1)[::-1]  # one copy per image: HWC BGR -> CHW RGB
    return torch.from_numpy(batch).div(255.0)  # uint8 / 255 -> float32 in one pass (same values as .float() / 255)
