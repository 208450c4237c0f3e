"""The deterministic image transforms that predict, validation and training share, each written once.

- :func:`letterbox`: resize keeping the aspect ratio (``r = min(H / h, W / w)``) and pad with grey (114) to
  ``(H, W)``, or, with ``auto=True``, only up to the next multiple of the stride (minimal rectangle). The padding is
  split with ``top = round(dh - 0.1)``, ``bottom = round(dh + 0.1)`` (same for left/right): the rounding rules that
  :func:`yolokit.ops.boxes.scale_boxes` (the one letterbox undo) inverts.
- :func:`bgr_to_rgb_chw`: ``B`` BGR ``(H, W, 3)`` uint8 images -> one ``(B, 3, H, W)`` RGB uint8 array.
- :func:`to_input_tensor`: the same, as the network input: ``(B, 3, H, W)`` float32 RGB in ``[0, 1]``.

numpy and cv2 only at import time of the functions (torch is imported by :func:`to_input_tensor` alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["letterbox", "bgr_to_rgb_chw", "to_input_tensor"]


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


def bgr_to_rgb_chw(images: Sequence[np.ndarray]) -> np.ndarray:
    """Stack ``B`` BGR ``(H, W, 3)`` uint8 images of one shape into a ``(B, 3, H, W)`` RGB uint8 array.

    One copy per image (HWC BGR -> CHW RGB written straight into the output); the result is C-contiguous.
    """
    if len(images) == 0:
        raise ValueError("bgr_to_rgb_chw: expected at least one image, got an empty list")
    shape = images[0].shape
    for image in images:
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.shape != shape:
            found = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(f"bgr_to_rgb_chw: expected BGR images of one shape {shape}, got {found}")
    batch = np.empty((len(images), 3, *shape[:2]), dtype=images[0].dtype)
    for index, image in enumerate(images):
        batch[index] = image.transpose(2, 0, 1)[::-1]
    return batch


def to_input_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """``B`` BGR ``(H, W, 3)`` uint8 images of one shape -> ``(B, 3, H, W)`` float32 RGB tensor in ``[0, 1]``.

    ``uint8 / 255`` in one pass (the same values as ``.float() / 255``), in numpy on the calling thread: torch's
    intra-op pool would split this small op across threads, and on a machine whose other core is busy the woken
    thread waits for a time slice (measured: 15 ms instead of 2 per 640x480 image, ``benchmarks/under_load.py``).
    """
    import torch

    return torch.from_numpy(np.divide(bgr_to_rgb_chw(images), np.float32(255.0), dtype=np.float32))
