"""The INT8 quantized forms and one quantization run with cached calibration ranges (ONNX Runtime).

- :data:`FORMS`: the candidate forms :func:`yolokit.export.quantize.quantize_int8` measures (:class:`QuantForm`:
  ``QDQ`` or ``QOperator``, which op types, shared ``Concat`` scales).
- :func:`quantize_form`: one ``quantize_static`` call with the cached ranges: weights int8 symmetric per channel,
  activations uint8 asymmetric, the nodes passed as ``excluded`` (the decode, and layers the sensitivity pass keeps)
  left in float.
- :class:`Candidate`: a quantized graph and what was measured on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yolokit.config import CALIB_METHODS
from yolokit.errors import ConfigError

__all__ = ["QuantForm", "FORMS", "FULL_OPS", "Candidate", "quantize_form", "calibration_method", "drop_points"]

# Every op type a form may quantize: Conv and SiLU's Sigmoid/Mul, the CSP blocks' Add/Concat, SPPF's MaxPool, the
# neck's Resize, C2PSA's attention (MatMul, Softmax) and the layout ops between them.
FULL_OPS = ("Conv", "Mul", "Sigmoid", "Add", "Concat", "MaxPool", "Resize", "Split", "MatMul", "Softmax", "Reshape",
            "Transpose", "Gemm")

@dataclass(frozen=True)
class QuantForm:
    """One way of quantizing: ONNX form (``QDQ`` or ``QOperator``), op types, and whether a ``Concat``'s inputs
    share its output's scale (then ``QLinearConcat`` is a copy instead of a requantization)."""

    name: str
    quant_format: str
    op_types: tuple[str, ...]
    shared_concat_scales: bool = False


FORMS = (
    QuantForm("qdq-conv", "QDQ", ("Conv", "MatMul", "Gemm")),  # convolutions only: what the reference exports
    QuantForm("qdq-full", "QDQ", FULL_OPS),
    QuantForm("qdq-full-shared-concat", "QDQ", FULL_OPS, shared_concat_scales=True),
    QuantForm("qop-full-shared-concat", "QOperator", FULL_OPS, shared_concat_scales=True),
)


@dataclass
class Candidate:
    """A quantized graph and what was measured on it (latency ratio = median per-round INT8 / FP32)."""

    form: QuantForm
    data: bytes = field(repr=False)
    latency_ms: float = 0.0
    ratio: float = 0.0
    map: float | None = None
    map50: float | None = None
    kept_float: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        return {"form": self.form.name, "size_mb": round(len(self.data) / 1e6, 3),
                "latency_ms": round(self.latency_ms, 3), "ratio_vs_fp32": round(self.ratio, 3),
                "map50_95": _round(self.map), "map50": _round(self.map50), "kept_float": list(self.kept_float)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 5)


def calibration_method(method: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    if method not in CALIB_METHODS:
        raise ConfigError(f"calib_method must be one of {', '.join(CALIB_METHODS)}, got {method!r}: pass e.g. "
                          "calib_method=minmax")
    return {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy}[method]


def _shared_concat_overrides(proto: Any, cache: Path, excluded: set[str]) -> dict[str, list[dict[str, Any]]]:
    """``TensorQuantOverrides`` giving each quantized ``Concat``'s inputs and output one range (their union)."""
    import numpy as np
    from onnxruntime.quantization.calibrate import load_tensors_data

    ranges = load_tensors_data(cache).data
    overrides: dict[str, list[dict[str, Any]]] = {}
    for node in proto.graph.node:
        names = [*node.input, node.output[0]] if node.op_type == "Concat" else []
        if not names or node.name in excluded or not all(name in ranges for name in names):
            continue
        low = min(float(np.min(ranges[name].range_value[0])) for name in names)
        high = max(float(np.max(ranges[name].range_value[1])) for name in names)
        for name in names:
            overrides.setdefault(name, [{"rmin": np.float32(low), "rmax": np.float32(high)}])
    return overrides


def quantize_form(prepared: Path, form: QuantForm, excluded: Sequence[str], cache: Path, workdir: Path,
                  method: str = "minmax") -> bytes:
    """Quantize ``prepared`` as ``form`` with the cached ranges; nodes in ``excluded`` stay float -> ONNX bytes."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    extra: dict[str, Any] = {"ActivationSymmetric": False, "WeightSymmetric": True,
                             "ForceQuantizeNoInputCheck": True}
    if form.shared_concat_scales:
        extra["TensorQuantOverrides"] = _shared_concat_overrides(onnx.load(str(prepared)), cache, set(excluded))
    target = workdir / f"{form.name}.onnx"
    quantize_static(str(prepared), str(target), None, quant_format=getattr(QuantFormat, form.quant_format),
                    op_types_to_quantize=list(form.op_types), per_channel=True, reduce_range=False,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=list(excluded),
                    calibrate_method=calibration_method(method), calibration_cache_path=str(cache),
                    extra_options=extra)
    return target.read_bytes()


def drop_points(fp32_map: float, candidate: Candidate) -> float:
    """mAP50-95 drop in points (percentage points of mAP: 0.01 mAP = 1 point)."""
    return 100.0 * (fp32_map - float(candidate.map or 0.0))


