"""Drawing of detection boxes and labels on BGR images (OpenCV).

Colours come from a fixed 20-colour palette indexed by class id, so a class keeps its colour across images and
runs. Label text is drawn on a filled box of the class colour in black or white, whichever contrasts more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

__all__ = ["colors", "text_color", "default_line_width", "draw_boxes"]

# A fixed palette of well-separated colours (RGB hex), readable on photos and on grey padding.
_PALETTE_HEX = (
    "E6194B", "3CB44B", "FFE119", "4363D8", "F58231", "911EB4", "42D4F4", "F032E6", "BFEF45", "FABED4",
    "469990", "DCBEFF", "9A6324", "FFFAC8", "800000", "AAFFC3", "808000", "FFD8B1", "000075", "A9A9A9",
)
_PALETTE_BGR = tuple((int(h[4:6], 16), int(h[2:4], 16), int(h[0:2], 16)) for h in _PALETTE_HEX)


def colors(index: int) -> tuple[int, int, int]:
    """BGR colour of class ``index`` (the palette repeats every 20 classes)."""
    return _PALETTE_BGR[int(index) % len(_PALETTE_BGR)]


def text_color(background_bgr: Sequence[int]) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with ``background_bgr`` (by relative luminance)."""
    blue, green, red = (float(c) for c in background_bgr[:3])
    luminance = 0.2126 * red + 0.7152 * green + 0.0722 * blue
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def default_line_width(shape_hw: Sequence[int]) -> int:
    """Box line width for an image: about 0.3 % of its mean side, at least 2 px."""
    return max(round((shape_hw[0] + shape_hw[1]) / 2 * 0.003), 2)


def _as_list(values: torch.Tensor | np.ndarray | Sequence[float] | None) -> list | None:
    if values is None:
        return None
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().tolist()
    return np.asarray(values).tolist()


def _draw_label(image: np.ndarray, text: str, x1: int, y1: int, color: tuple[int, int, int], line_width: int) -> None:
    import cv2

    font_scale = line_width / 3
    thickness = max(line_width - 1, 1)
    (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
    box_h = text_h + baseline + 2
    outside = y1 - box_h >= 0  # label above the box when there is room, else just inside its top edge
    top = y1 - box_h if outside else y1
    x1 = min(max(x1, 0), max(image.shape[1] - text_w - 2, 0))
    cv2.rectangle(image, (x1, top), (x1 + text_w + 2, top + box_h), color, -1, cv2.LINE_AA)
    cv2.putText(image, text, (x1 + 1, top + text_h + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, text_color(color),
                thickness, cv2.LINE_AA)


def draw_boxes(
    image: np.ndarray,
    boxes_xyxy: torch.Tensor | np.ndarray,
    classes: torch.Tensor | np.ndarray | Sequence[int],
    confs: torch.Tensor | np.ndarray | Sequence[float] | None = None,
    names: Mapping[int, str] | Sequence[str] | None = None,
    line_width: int | None = None,
    labels: bool = True,
) -> np.ndarray:
    """Draw boxes with ``"name 0.87"`` labels on ``image`` **in place** and return it.

    Args:
        image: ``(h, w, 3)`` BGR uint8 image, modified in place (pass a copy to keep the original).
        boxes_xyxy: ``(N, 4)`` boxes in pixels of ``image``.
        classes: ``(N,)`` class ids (select the colour and the name).
        confs: ``(N,)`` confidences appended to the label, or None for names only.
        names: class id -> name; missing ids are shown as the number.
        line_width: box line width in pixels (default: :func:`default_line_width`).
        labels: draw the label text (False: boxes only).
    """
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"draw_boxes: expected a (h, w, 3) BGR image, got {getattr(image, 'shape', type(image))}")
    import cv2

    box_list = _as_list(boxes_xyxy) or []
    class_list = _as_list(classes) or []
    conf_list = _as_list(confs)
    if len(class_list) != len(box_list) or (conf_list is not None and len(conf_list) != len(box_list)):
        raise ValueError(f"draw_boxes: got {len(box_list)} boxes, {len(class_list)} classes and "
                         f"{'no' if conf_list is None else len(conf_list)} confidences; pass one per box")
    line_width = line_width or default_line_width(image.shape[:2])
    for i, (box, class_id) in enumerate(zip(box_list, class_list, strict=True)):
        color = colors(int(class_id))
        x1, y1, x2, y2 = (int(round(v)) for v in box[:4])
        cv2.rectangle(image, (x1, y1), (x2, y2), color, line_width, cv2.LINE_AA)
        if labels:
            text = _class_name(names, int(class_id))
            if conf_list is not None:
                text = f"{text} {conf_list[i]:.2f}"
            _draw_label(image, text, x1, y1, color, line_width)
    return image


def _class_name(names: Mapping[int, str] | Sequence[str] | None, class_id: int) -> str:
    if isinstance(names, Mapping):
        return str(names.get(class_id, class_id))
    if names is not None and 0 <= class_id < len(names):
        return str(names[class_id])
    return str(class_id)
