"""``diff_versions(registry, a, b)``: what changed from version A to version B, as a JSON-able dict.

Sections (rendered by :func:`yolokit.registry.report.format_diff`):

- ``metadata``: ``[{"field", "a", "b", "same"}]`` for the recorded fields (sha256, format, precision, task,
  architecture, scale, parameters, file size, dataset fingerprint, imgsz, parent, relation, ...);
- ``metrics``: ``[{"key", "a", "b", "delta"}]`` over both versions' metric keys; ``train_args``: changed keys;
- ``classes``: by class index: ``added`` (index only in B), ``removed`` (only in A), ``renamed`` (``[i, old, new]``);
- ``architecture``: spec layer rows that differ (``[i, row_a, row_b]``) and differing spec keys (nc, scales...);
- ``weights``: :mod:`yolokit.registry.weight_diff` (changed / unchanged tensors, relative L2 change per tensor and
  per layer, the largest movers, frozen layers; or the per-tensor quantization error of an INT8 side).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from yolokit.registry.records import Version
    from yolokit.registry.registry import Registry

__all__ = ["diff_versions", "diff_classes", "diff_architecture", "diff_metrics"]

_FIELDS = ("sha256", "format", "precision", "task", "architecture", "scale", "parameters", "file_size",
           "dataset_fingerprint", "parent", "relation", "created")
_META_FIELDS = ("imgsz", "stride", "yolokit_version", "nms_free", "dynamic")
_SPEC_KEYS = ("nc", "scale", "scales", "end2end", "reg_max", "channels")


def diff_versions(registry: Registry, a: Version, b: Version) -> dict[str, Any]:
    """The full diff of two versions (see the module docstring)."""
    from yolokit.registry.weight_diff import diff_weights

    return {
        "a": a.ref, "b": b.ref,
        "metadata": diff_metadata(a, b),
        "metrics": diff_metrics(a.metrics, b.metrics),
        "train_args": _changed_keys(a.train_args, b.train_args),
        "classes": diff_classes(a.names, b.names),
        "architecture": diff_architecture(a.metadata.get("spec") or {}, b.metadata.get("spec") or {}),
        "weights": diff_weights(registry, a, b),
    }


def diff_metadata(a: Version, b: Version) -> list[dict[str, Any]]:
    rows = [{"field": f, "a": getattr(a, f), "b": getattr(b, f)} for f in _FIELDS]
    rows += [{"field": f, "a": a.metadata.get(f), "b": b.metadata.get(f)} for f in _META_FIELDS
             if a.metadata.get(f) is not None or b.metadata.get(f) is not None]
    for row in rows:
        row["same"] = row["a"] == row["b"]
    return rows


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        return None
    return float(value)


def diff_metrics(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """``[{"key", "a", "b", "delta"}]`` for every metric key of either side (delta None when not both numbers)."""
    rows = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        na, nb = _number(va), _number(vb)
        rows.append({"key": key, "a": va, "b": vb, "delta": None if na is None or nb is None else nb - na})
    return rows


def _changed_keys(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "a": a.get(k), "b": b.get(k)} for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def diff_classes(a: dict[int, str], b: dict[int, str]) -> dict[str, Any]:
    """Class changes by index: ``added`` / ``removed`` ``[[i, name]]``, ``renamed`` ``[[i, old, new]]``."""
    a = {int(k): v for k, v in a.items()}
    b = {int(k): v for k, v in b.items()}
    return {
        "a": len(a), "b": len(b),
        "added": [[i, b[i]] for i in sorted(set(b) - set(a))],
        "removed": [[i, a[i]] for i in sorted(set(a) - set(b))],
        "renamed": [[i, a[i], b[i]] for i in sorted(set(a) & set(b)) if a[i] != b[i]],
    }


def _rows(spec: dict[str, Any]) -> list[Any]:
    return [row for part in ("backbone", "head") for row in (spec.get(part) or [])]


def diff_architecture(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Spec rows that differ (``[i, row_a or None, row_b or None]``, i counted over backbone + head) and keys."""
    rows_a, rows_b = _rows(a), _rows(b)
    rows = [[i, rows_a[i] if i < len(rows_a) else None, rows_b[i] if i < len(rows_b) else None]
            for i in range(max(len(rows_a), len(rows_b)))
            if (rows_a[i] if i < len(rows_a) else None) != (rows_b[i] if i < len(rows_b) else None)]
    keys = [{"key": k, "a": a.get(k), "b": b.get(k)} for k in _SPEC_KEYS if a.get(k) != b.get(k)]
    return {"layers_a": len(rows_a), "layers_b": len(rows_b), "rows": rows, "keys": keys}
