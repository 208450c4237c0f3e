"""What a reference classifier checkpoint records about its preprocessing, read from inert records (private).

Reference ``-cls`` checkpoints keep the validation transform on the model (``model.transforms``): a torchvision
``Compose([Resize(s), CenterCrop(s), ToTensor(), Normalize(mean, std)])`` (8.1 and later) or, in 8.0.x, the
reference's own ``Compose([CenterCrop(s), ToTensor(), Normalize(...)])`` (centre square, then an OpenCV bilinear
resize). The restricted unpickler turns each of them into a :class:`~yolokit.weights._foreign_globals.ModuleRecord`
(``InterpolationMode("bilinear")`` becomes a record whose ``init_args`` hold ``"bilinear"``); nothing of torchvision is
imported or run. :func:`transform_metadata` reads their parameters into the ``classify_transforms`` metadata entry
(``{"ops", "resize", "crop", "interpolation", "mean", "std", "square_crop"}``) that yolokit's classification
preprocessing follows.
"""

from __future__ import annotations

import logging
from typing import Any

from yolokit.weights._foreign_globals import ModuleRecord
from yolokit.weights._foreign_pickle import to_plain

__all__ = ["transform_metadata", "batchnorm_eps"]

logger = logging.getLogger(__name__)

# torchvision's older integer interpolation codes (PIL constants)
_PIL_CODES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
_INTERPOLATIONS = {"nearest", "nearest-exact", "bilinear", "bicubic", "box", "hamming", "lanczos"}


def _interpolation(value: Any) -> str:
    if isinstance(value, ModuleRecord) and value.init_args and isinstance(value.init_args[0], str):
        value = value.init_args[0]
    elif isinstance(value, ModuleRecord):
        value = value.attributes.get("_value_", "bilinear")
    if isinstance(value, int) and not isinstance(value, bool):
        value = _PIL_CODES.get(value, "bilinear")
    value = str(value).lower()
    return value if value in _INTERPOLATIONS else "bilinear"


def _size(value: Any) -> int | list[int] | None:
    value = to_plain(value)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, list) and value and all(isinstance(v, int) and v > 0 for v in value):
        return value[0] if len(value) == 1 or len(set(value)) == 1 else value[:2]
    return None


def _read_op(op: ModuleRecord, out: dict[str, Any]) -> None:
    """Fill ``out`` from one transform record."""
    attrs, reference = op.attributes, op.module.startswith("ultralytics")
    if op.type_name == "Resize":
        out["resize"] = _size(attrs.get("size"))
        out["interpolation"] = _interpolation(attrs.get("interpolation"))
    elif op.type_name == "CenterCrop" and reference:  # 8.0.x: centre square, then an OpenCV resize
        h, w = to_plain(attrs.get("h")), to_plain(attrs.get("w"))
        out["crop"] = h if h == w else [h, w]
        out["square_crop"] = True
    elif op.type_name == "CenterCrop":
        out["crop"] = _size(attrs.get("size"))
    elif op.type_name == "Normalize":
        out["mean"] = [float(v) for v in to_plain(attrs.get("mean")) or (0.0, 0.0, 0.0)]
        out["std"] = [float(v) for v in to_plain(attrs.get("std")) or (1.0, 1.0, 1.0)]
    elif op.type_name != "ToTensor":
        out.setdefault("unsupported", []).append(f"{op.module}.{op.type_name}")


def transform_metadata(record: Any) -> dict[str, Any] | None:
    """The ``classify_transforms`` entry for a pickled ``model.transforms`` record, or None when there is none."""
    if not isinstance(record, ModuleRecord):
        return None
    ops = record.attributes.get("transforms") if record.type_name == "Compose" else [record]
    if not isinstance(ops, (list, tuple)):
        return None
    out: dict[str, Any] = {"ops": []}
    for op in ops:
        if isinstance(op, ModuleRecord):
            out["ops"].append(op.type_name)
            _read_op(op, out)
    if out.get("unsupported"):
        logger.warning("The checkpoint's eval transform has steps yolokit does not reproduce (%s); predictions use "
                       "resize + centre crop + normalise only", ", ".join(out["unsupported"]))
    return out if len(out) > 1 else None


def batchnorm_eps(model: ModuleRecord) -> float | None:
    """The ``eps`` every BatchNorm record of ``model`` shares (None when there are none or they differ)."""
    found: set[float] = set()
    stack, seen = [model], set()
    while stack and len(seen) < 100_000:
        record = stack.pop()
        if id(record) in seen:  # shared children (a DAG) are visited once
            continue
        seen.add(id(record))
        if record.type_name.startswith("BatchNorm") and isinstance(record.attributes.get("eps"), float):
            found.add(record.attributes["eps"])
        stack.extend(c for c in record.modules.values() if isinstance(c, ModuleRecord) and id(c) not in seen)
    return found.pop() if len(found) == 1 else None
