"""Checks of an ONNX file's yolokit metadata against its graph, before the backend trusts either.

``metadata_props`` are text anyone can write: names that do not match the graph's class count, a stride of 0 or
``"abc"``, a negative ``imgsz`` or a graph that is not a detector would fail later as tracebacks (a division by
zero, an index error in NMS). :func:`check_onnx_metadata` refuses them with one ``ExportError`` line naming the key.
"""

from __future__ import annotations

import math
from typing import Any

from yolokit.errors import ExportError

__all__ = ["check_onnx_metadata"]

_FIX = "re-export the model with yolokit's export (format=onnx)"


def _fail(message: str) -> ExportError:
    return ExportError(f"ONNX model metadata: {message}; {_FIX}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_onnx_metadata(meta: dict[str, Any], input_shape: list[Any], output_shape: list[Any]) -> None:
    """Validate decoded metadata and the first input/output shapes (ints or symbolic names) of the session."""
    from yolokit.config import MAX_IMGSZ
    from yolokit.models.spec_limits import MAX_CLASSES

    names = meta.get("names")
    if not isinstance(names, dict) or not names or sorted(names) != list(range(len(names))):
        raise _fail(f"'names' must map class indices 0..n-1 to names, found {str(names)[:80]}")
    if len(names) > MAX_CLASSES:
        raise _fail(f"{len(names)} class names, more than {MAX_CLASSES}")
    stride = meta.get("stride")
    if not isinstance(stride, list) or not stride or not all(
        isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and 1 <= s <= 1024
        for s in stride
    ):
        raise _fail(f"'stride' must be a list of numbers in 1..1024, found {str(stride)[:80]}")
    imgsz = meta.get("imgsz")
    sides = imgsz if isinstance(imgsz, list) else [imgsz]
    if not 1 <= len(sides) <= 2 or not all(_is_int(s) and 1 <= s <= MAX_IMGSZ for s in sides):
        raise _fail(f"'imgsz' must be [height, width] in 1..{MAX_IMGSZ}, found {str(imgsz)[:80]}")
    for key in ("dynamic", "nms_free", "end2end"):
        if not isinstance(meta.get(key), bool):
            raise _fail(f"'{key}' must be true or false, found {str(meta.get(key))[:40]}")
    classify = meta.get("task") == "classify"
    max_det = meta.get("max_det")
    if not classify and (not _is_int(max_det) or max_det < 1):
        raise _fail(f"'max_det' must be a positive int, found {str(max_det)[:40]}")
    _check_graph(len(names), classify, bool(meta["nms_free"] or meta.get("embedded_nms")), input_shape,
                 output_shape)  # fmt: skip


def _check_graph(nc: int, classify: bool, final_rows: bool, input_shape: list[Any], output_shape: list[Any]) -> None:
    """The input must be an image batch (B, 3, H, W) and the output the head's layout for ``nc`` classes."""
    if len(input_shape) != 4 or input_shape[1] not in (3, "3") and _is_int(input_shape[1]):
        raise _fail(f"the graph's input has shape {input_shape}, expected an image batch (B, 3, H, W)")
    if classify:
        expected, axis, layout = nc, 1, "(B, nc) class probabilities"
        rank = 2
    elif final_rows:
        expected, axis, layout = 6, 2, "(B, K, 6) detection rows"
        rank = 3
    else:
        expected, axis, layout = 4 + nc, 1, "(B, 4 + nc, anchors) detector output"
        rank = 3
    if len(output_shape) != rank or (_is_int(output_shape[axis]) and output_shape[axis] != expected):
        raise _fail(f"the graph's output has shape {output_shape} but the metadata's {nc} names need {layout} "
                    f"with {expected} at axis {axis}: the names do not match the graph, or it is not a yolokit model")
