"""Per-tensor and per-layer weight change between two registered versions (both files sha256-verified first).

What is compared:

- two PyTorch files (``.safetensors`` / ``.pt``): the state_dict tensors by name, as float32 (``num_batches_tracked``
  counters and other integer buffers left out);
- an ONNX side: the weights of the graph's Conv / Gemm / MatMul nodes (:mod:`yolokit.registry.onnx_weights`; INT8
  initializers dequantized). A PyTorch side is exported in memory with the ONNX side's settings (imgsz, dynamic,
  head), so both are compared in the same fused (Conv+BN folded) form, node by node.

A tensor is *changed* when its values differ at all (bitwise); its change is ``||b - a|| / ||a||`` (relative L2) and
``max |b - a|``. A layer (``model.N``) whose tensors are all unchanged is *frozen*. When exactly one side is INT8
(mode ``quantization``) the same numbers are the quantization error of each dequantized tensor.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from yolokit.registry.records import Version
    from yolokit.registry.registry import Registry

__all__ = ["diff_weights", "compare_tensors", "layer_of"]

_LAYER = re.compile(r"model[./](\d+)")
TOP = 10
_STATISTICS = ("running_mean", "running_var")  # BatchNorm statistics: counted per layer, not listed as movers


def layer_of(key: str) -> str:
    """``model.3.cv1.conv.weight`` / ``/model.3/cv1/conv/Conv.weight`` -> ``model.3`` (else the first part)."""
    match = _LAYER.search(key)
    return f"model.{match.group(1)}" if match else re.split(r"[./]", key.strip("/"))[0]


def _torch_tensors(registry: Registry, version: Version) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    weights = registry.verified_weights(version)
    values, stored = {}, {}
    for key, tensor in weights.state_dict.items():
        if tensor.is_floating_point():
            values[key] = tensor.detach().float().cpu().numpy()
            stored[key] = str(tensor.dtype).replace("torch.", "")
    return values, stored


def _onnx_tensors(data: bytes) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from yolokit.export.onnx import require
    from yolokit.registry.onnx_weights import node_weights

    weights = node_weights(require("onnx").load_from_string(data))
    return {k: w.values for k, w in weights.items()}, {k: w.stored for k, w in weights.items()}


def _exported_like(registry: Registry, version: Version, onnx_meta: dict[str, Any]) -> bytes:
    """The PyTorch version exported in memory with the settings an ONNX version records."""
    from yolokit.export.onnx import export_onnx
    from yolokit.weights.load import build_from_weights

    model = build_from_weights(registry.verified_weights(version))
    imgsz = onnx_meta.get("imgsz") or 640
    return export_onnx(model, imgsz=imgsz, dynamic=bool(onnx_meta.get("dynamic", True)),
                       nms_free=bool(onnx_meta.get("nms_free", False)))


def _side(registry: Registry, version: Version, other: Version) -> tuple[dict, dict]:
    if version.format == "onnx":
        return _onnx_tensors(registry.verified_bytes(version.ref)[1])
    if other.format == "onnx":
        return _onnx_tensors(_exported_like(registry, version, other.metadata))
    return _torch_tensors(registry, version)


def diff_weights(registry: Registry, a: Version, b: Version) -> dict[str, Any]:
    """Weight change from ``a`` to ``b`` (see the module docstring) as a JSON-able dict."""
    if a.format == "onnx" or b.format == "onnx":
        torch_side = [v.ref for v in (a, b) if v.format != "onnx"]
        compared = "ONNX node weights (Conv+BN folded; INT8 dequantized)" + (
            f"; {torch_side[0]} exported in memory with the ONNX side's settings" if torch_side else "")
    else:
        compared = "state_dict tensors by name (float32; integer buffers skipped)"
    values_a, stored_a = _side(registry, a, b)
    values_b, stored_b = _side(registry, b, a)
    quantization = (a.precision == "int8") != (b.precision == "int8")
    report = compare_tensors(values_a, values_b, quantization=quantization)
    if quantization:
        stored = stored_b if b.precision == "int8" else stored_a
        counts: dict[str, int] = {}
        for key in report["names"]:
            counts[stored.get(key, "?")] = counts.get(stored.get(key, "?"), 0) + 1
        report["stored"] = dict(sorted(counts.items()))
        report["quantized"] = counts.get("int8", 0) + counts.get("uint8", 0)
    report["compared"] = compared
    del report["names"]
    return report


def _tensor_row(key: str, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    delta = y64 - x64
    sq_delta, sq_a = float(np.sum(delta * delta)), float(np.sum(x64 * x64))
    rel = math.sqrt(sq_delta / sq_a) if sq_a > 0 else (0.0 if sq_delta == 0 else math.inf)
    return {"name": key, "layer": layer_of(key), "shape": list(x.shape), "changed": not np.array_equal(x, y),
            "rel_l2": rel, "max_abs": float(np.max(np.abs(delta))) if delta.size else 0.0,
            "_sq_delta": sq_delta, "_sq_a": sq_a}


def _layers(rows: list[dict[str, Any]], reshaped: list[dict[str, Any]], only: dict[str, list[str]]) -> list[dict]:
    layers: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = layers.setdefault(row["layer"], {"layer": row["layer"], "tensors": 0, "changed": 0, "max_abs": 0.0,
                                                 "_sq_delta": 0.0, "_sq_a": 0.0, "status": ""})
        entry["tensors"] += 1
        entry["changed"] += int(row["changed"])
        entry["max_abs"] = max(entry["max_abs"], row["max_abs"])
        entry["_sq_delta"] += row["_sq_delta"]
        entry["_sq_a"] += row["_sq_a"]
    for entry in layers.values():
        sq_a, sq_d = entry.pop("_sq_a"), entry.pop("_sq_delta")
        entry["rel_l2"] = math.sqrt(sq_d / sq_a) if sq_a > 0 else (0.0 if sq_d == 0 else math.inf)
        entry["status"] = "changed" if entry["changed"] else "frozen"
    for row in reshaped:
        layers.setdefault(row["layer"], {"layer": row["layer"], "tensors": 0, "changed": 0, "max_abs": None,
                                         "rel_l2": None})["status"] = "reshaped"
    for side, keys in only.items():
        for key in keys:
            layers.setdefault(layer_of(key), {"layer": layer_of(key), "tensors": 0, "changed": 0, "max_abs": None,
                                              "rel_l2": None, "status": f"only in {side}"})
    return sorted(layers.values(), key=lambda e: _layer_order(e["layer"]))


def _layer_order(layer: str) -> tuple[int, str]:
    match = _LAYER.fullmatch(layer.replace("/", "."))
    return (int(match.group(1)), "") if match else (10**9, layer)


def _mover_order(row: dict[str, Any]) -> tuple[int, float]:
    """Largest relative change first; tensors that started at zero (infinite relative change) after, by size."""
    finite = math.isfinite(row["rel_l2"])
    return (0, -row["rel_l2"]) if finite else (1, -row["_sq_delta"])


def compare_tensors(a: dict[str, np.ndarray], b: dict[str, np.ndarray], quantization: bool = False) -> dict[str, Any]:
    """Compare two name -> array dicts: counts, per-tensor rows of the largest changes, per-layer summary."""
    common = sorted(set(a) & set(b))
    reshaped = [{"name": k, "layer": layer_of(k), "a": list(a[k].shape), "b": list(b[k].shape)}
                for k in common if a[k].shape != b[k].shape]
    rows = [_tensor_row(k, a[k], b[k]) for k in common if a[k].shape == b[k].shape]
    only = {"A": sorted(set(a) - set(b)), "B": sorted(set(b) - set(a))}
    layers = _layers(rows, reshaped, only)
    sq_d, sq_a = sum(r["_sq_delta"] for r in rows), sum(r["_sq_a"] for r in rows)
    movers = [r for r in rows if r["changed"] and not r["name"].endswith(_STATISTICS)]
    top = sorted(movers, key=_mover_order)[:TOP]
    return {
        "mode": "quantization" if quantization else "change",
        "tensors": len(rows), "changed": sum(r["changed"] for r in rows),
        "unchanged": sum(not r["changed"] for r in rows),
        "rel_l2": math.sqrt(sq_d / sq_a) if sq_a > 0 else 0.0,
        "reshaped": reshaped, "only_a": only["A"], "only_b": only["B"], "layers": layers,
        "changed_layers": [e["layer"] for e in layers if e["status"] == "changed"],
        "frozen_layers": [e["layer"] for e in layers if e["status"] == "frozen"],
        "unchanged_tensors": [r["name"] for r in rows if not r["changed"]],
        "top": [{k: r[k] for k in ("name", "shape", "rel_l2", "max_abs")} for r in top],
        "names": [r["name"] for r in rows],
    }
