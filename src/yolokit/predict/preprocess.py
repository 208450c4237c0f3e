"""Batching of BGR images into the network input tensor for predict: ``check_imgsz`` and ``preprocess``.

The letterbox itself (and the HWC BGR -> CHW RGB copy) live in :mod:`yolokit.data.transforms`, shared with
validation and training; ``letterbox`` is re-exported here (``yolokit.predict.preprocess.letterbox`` keeps working).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch

from yolokit.data.transforms import letterbox, to_input_tensor

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
    return to_input_tensor(boxed)
