"""Rows of ``yolokit inspect`` text that need more than one line: an ONNX file's metadata and a spec's layers.

``onnx_fields(props)`` decodes an ONNX file's ``metadata_props`` (JSON text values, as ``export_onnx`` writes them)
into the report's fields (task, classes, stride, imgsz, spec); ``created_rows`` and ``spec_rows`` render the
``Created`` / ``Graph`` / ``Spec`` rows. Nothing here reads a file.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["onnx_fields", "created_rows", "spec_rows"]

# ONNX metadata_props shown in rows of their own (Model, Classes, Input, Spec), not in the Graph row.
_SHOWN_ELSEWHERE = ("task", "names", "stride", "imgsz", "spec", "created", "yolokit_version")
# What the graph is (one ``Graph`` row); any other record gets a row of its own.
_GRAPH = ("producer", "opset", "precision", "head", "dynamic", "nms_free", "end2end", "max_det")


def _decode(value: Any) -> Any:
    """A ``metadata_props`` value: JSON text -> its value; anything else as it is."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return value


def onnx_fields(props: dict[str, str]) -> dict[str, Any]:
    """Report fields from an ONNX file's yolokit ``metadata_props``: ``task``, ``nc``, ``names``, ``stride``,
    ``imgsz``, ``spec`` (only the keys present and well-formed)."""
    meta = {key: _decode(value) for key, value in props.items()}
    out: dict[str, Any] = {}
    names = meta.get("names")
    if isinstance(names, dict):
        out.update(nc=len(names), names={str(k): str(v) for k, v in names.items()})
    for key in ("task", "stride", "imgsz"):
        if meta.get(key) is not None:
            out[key] = meta[key]
    if isinstance(meta.get("spec"), dict):
        out["spec"] = meta["spec"]
    return out


def created_rows(report: dict[str, Any]) -> list[str]:
    """``Created`` (date and yolokit version; ``?`` when the file records none), then for an ONNX file a ``Graph``
    row (producer, opset, head options) and otherwise a ``Provenance`` row."""
    created = {key: _decode(value) for key, value in (report.get("created") or {}).items()}
    when, version = created.pop("created", None), created.pop("yolokit_version", None)
    lines = []
    if when or version:
        lines.append(f"Created     {when or '? (no date recorded)'}" + (f" by yolokit {version}" if version else ""))
    if report.get("format") == "onnx":
        rest = {k: v for k, v in created.items() if k not in _SHOWN_ELSEWHERE}
        graph = {k: v for k, v in rest.items() if k in _GRAPH}
        if graph:
            lines.append("Graph       " + ", ".join(f"{k} {_text(v)}" for k, v in graph.items()))
        lines += [f"{_label(k):<11} {_text(v)}" for k, v in rest.items() if k not in _GRAPH and v is not None]
    elif created:
        lines.append("Provenance  " + ", ".join(f"{k} {v}" for k, v in created.items()))
    return lines


def _label(key: str) -> str:
    """``source_sha256`` -> ``Source sha256`` (a record's own row)."""
    return key.replace("_", " ").capitalize()


def _text(value: Any) -> str:
    """A metadata value on one row: dicts as ``key value, ...``, floats to 4 significant digits."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {_text(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if isinstance(value, list) else str(value)


def spec_rows(spec: Any) -> list[str]:
    """``Spec`` header (nc, scale, head options) and one row per layer: ``index part [from, repeats, module,
    args]``."""
    if not isinstance(spec, dict):
        return []
    head = {k: spec[k] for k in ("nc", "scale", "end2end", "reg_max", "yaml_file") if spec.get(k) not in (None, "")}
    scales = spec.get("scales")
    if isinstance(scales, dict):
        head["scales"] = ", ".join(f"{k} {v}" for k, v in scales.items())
    lines = ["Spec        " + ", ".join(f"{k} {v}" for k, v in head.items())]
    index = 0
    for part in ("backbone", "head"):
        for row in spec.get(part) or []:
            lines.append(f"  {index:>3}  {part:<8}  {json.dumps(row)}")
            index += 1
    return lines
