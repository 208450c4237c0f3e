"""ONNX export of a ``DetectionModel``: one graph, input ``images`` ``(B, 3, H, W)`` float32 RGB in [0, 1], output
``output0``: ``(B, 4+nc, A)`` xywh boxes in input pixels + class probabilities, or, with ``nms_free=True`` (YOLO26
one-to-one head), ``(B, K, 6)`` ``[x1, y1, x2, y2, score, class]`` rows sorted by score (K = the smaller of the
head's ``max_det`` and the number of anchors of the input, computed in the graph); for a classifier ``(B, nc)``
softmax probabilities (``max_det`` null; its recorded eval transform as ``classify_transforms``).

The file carries what a runtime needs to use it standalone, as ``metadata_props`` whose values are JSON text:
``yolokit_version``, ``task``, ``names`` (``{"0": "person", ...}``), ``stride`` (``[8, 16, 32]``), ``imgsz``
(``[h, w]`` of the export), ``dynamic``, ``nms_free``, ``end2end``, ``max_det`` and ``spec``. Read them back with
:func:`read_onnx_metadata`.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolokit.errors import ConfigError, ExportError
from yolokit.utils.io import format_size

if TYPE_CHECKING:
    from yolokit.models.detector import DetectionModel

__all__ = ["export_onnx", "prepare_for_export", "read_onnx_metadata", "decode_metadata", "require", "INPUT_NAME",
           "OUTPUT_NAME", "INSTALL_HINT"]

INPUT_NAME = "images"
OUTPUT_NAME = "output0"
INSTALL_HINT = "pip install onnx onnxruntime"

logger = logging.getLogger(__name__)


def require(module: str) -> Any:
    """Import ``module`` (``"onnx"`` or ``"onnxruntime"``) or raise ``ExportError`` naming the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ExportError(f"ONNX export/runtime needs the '{module}' package, which is not installed ({error}): "
                          f"run {INSTALL_HINT}") from error


def _export_shape(imgsz: int | Sequence[int], stride: int) -> tuple[int, int]:
    """``imgsz`` (int or (h, w)) -> ``(h, w)``, both positive multiples of ``stride``."""
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[-1]))
    if h <= 0 or w <= 0 or h % stride or w % stride:
        raise ConfigError(f"export imgsz must be positive multiples of the model stride {stride}, got {imgsz!r}: "
                          f"pass e.g. imgsz=640")
    return h, w


def prepare_for_export(model: DetectionModel, nms_free: bool) -> DetectionModel:
    """A fused fp32 eval copy on the CPU with the requested head (the caller's model is not changed).

    The copy's CSP blocks compute their ``cv1`` halves with two convolutions (``split_cv1``): same outputs, a
    faster graph in ONNX Runtime.
    """
    for attribute in ("stride", "names", "end2end", "set_nms_free", "head", "spec"):
        if not hasattr(model, attribute):
            raise ConfigError(f"export_onnx expects a yolokit DetectionModel, got {type(model).__name__} without "
                              f"'{attribute}': build it with yolokit.models.builder.build_model")
    if nms_free and not model.end2end:
        raise ConfigError("nms_free=True needs a YOLO26 model with a one-to-one head; this model has none: "
                          "export with nms_free=False")
    from yolokit.nn.inference import inference_copy

    prepared = inference_copy(model, "cpu")  # fused fp32 eval copy, frozen
    for module in list(prepared.modules()):
        if hasattr(module, "split_cv1"):  # C2f / C3k2 / C2PSA: no Split op in the graph (see C2f.split_cv1)
            module.split_cv1()
    prepared.requires_grad_(False)  # the split parts' new parameters too
    if prepared.end2end:
        prepared.set_nms_free(nms_free)
    return prepared


def _trace_to_onnx(model: Any, shape_hw: tuple[int, int], dynamic: bool, nms_free: bool, opset: int) -> bytes:
    """``torch.onnx.export`` (TorchScript-based exporter) of ``model`` into bytes; batch is always dynamic."""
    import torch

    axes: dict[str, dict[int, str]] = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    if dynamic:
        axes[INPUT_NAME].update({2: "height", 3: "width"})
        if not _is_classifier(model):  # a classifier's (B, nc) output has no size-dependent axis
            axes[OUTPUT_NAME][1 if nms_free else 2] = "detections" if nms_free else "anchors"
    buffer = io.BytesIO()
    dummy = torch.zeros(1, 3, *shape_hw)
    try:
        with warnings.catch_warnings():  # tracer/deprecation warnings concern shapes the dynamic axes cover
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (dummy,), buffer, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              opset_version=int(opset), dynamo=False, dynamic_axes=axes, do_constant_folding=True)
    except ImportError as error:
        raise ExportError(f"torch.onnx.export needs a missing package ({error}): run {INSTALL_HINT}") from error
    except Exception as error:  # noqa: BLE001 - the exporter raises many types; report them in one line
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ExportError(f"ONNX export (opset {opset}) failed: {type(error).__name__}: {message}; try opset=17 "
                          "or report the model spec") from error
    return buffer.getvalue()


def _is_classifier(model: Any) -> bool:
    """A classification head (``Classify``: ``(B, nc)`` probabilities) rather than a detection head."""
    return not hasattr(model.head, "max_det")


def _metadata(model: Any, shape_hw: tuple[int, int], dynamic: bool, nms_free: bool) -> dict[str, str]:
    """The ``metadata_props`` written into the file (every value JSON text)."""
    import yolokit

    stride = [int(s) if float(s).is_integer() else float(s) for s in model.stride.tolist()]
    values = {
        "yolokit_version": yolokit.__version__,
        "task": model.task,
        "names": {str(int(k)): str(v) for k, v in dict(model.names).items()},
        "stride": stride,
        "imgsz": list(shape_hw),
        "dynamic": bool(dynamic),
        "nms_free": bool(nms_free),
        "end2end": bool(model.end2end),
        "max_det": None if _is_classifier(model) else int(model.head.max_det),
        "spec": model.spec,
    }
    transforms = (getattr(model, "metadata", None) or {}).get("classify_transforms")
    if transforms:  # a classifier's recorded eval transform (resize, crop, mean, std)
        values["classify_transforms"] = transforms
    return {key: json.dumps(value, default=str) for key, value in values.items()}


def _output_dims(model: Any, shape_hw: tuple[int, int], dynamic: bool, nms_free: bool) -> dict[int, int]:
    """The output dimensions known at export time: ``{1: 4+nc}`` (+ ``{2: A}`` when static), or ``{2: 6}`` (+ ``{1: K}``
    when static) for the NMS-free head."""
    if _is_classifier(model):
        return {1: int(model.nc)}
    anchors = sum((shape_hw[0] // int(s)) * (shape_hw[1] // int(s)) for s in model.stride.tolist())
    if nms_free:
        return {2: 6} if dynamic else {1: min(int(model.head.max_det), anchors), 2: 6}
    return {1: 4 + int(model.nc)} if dynamic else {1: 4 + int(model.nc), 2: anchors}


def _finish_graph(raw: bytes, props: dict[str, str], fixed: dict[int, int]) -> bytes:
    """Attach ``metadata_props`` and write the output dimensions known at export time; return the bytes."""
    onnx = require("onnx")
    proto = onnx.load_from_string(raw)
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    for index, size in fixed.items():
        if index < len(dims):
            dims[index].Clear()
            dims[index].dim_value = size
    return proto.SerializeToString()


def export_onnx(model: DetectionModel, f: str | Path | io.BytesIO | None = None, *,
                imgsz: int | Sequence[int] = (640, 640), dynamic: bool = True, nms_free: bool = False,
                opset: int = 17, half: bool = False) -> bytes | Path:
    """Export ``model`` to ONNX (see the module docstring for the graph's inputs, outputs and metadata).

    The model is deep-copied, fused, switched to eval and fp32 on the CPU; the caller's model is not changed.

    Args:
        model: a yolokit ``DetectionModel``.
        f: a file path (written atomically, by the main process only; returns the ``Path``), a ``BytesIO`` (the
            bytes are written into it and returned) or None (returns the bytes).
        imgsz: the traced input size, int or (h, w), multiples of the stride. With ``dynamic=True`` any multiple
            of the stride is accepted at run time; with ``dynamic=False`` exactly this size (batch stays dynamic).
        dynamic: dynamic height/width (the predictor then letterboxes to the minimal rectangle, as with torch).
        nms_free: export the YOLO26 one-to-one head (``(B, K, 6)`` output, ``K = min(max_det, anchors)``).
        opset: ONNX opset version.
        half: float16 inside, float32 input and output (:func:`yolokit.export.fp16.convert_fp16`; the decode and the
            ops without float16 kernels stay float32).
    """
    require("onnx")
    if isinstance(f, (str, Path)):
        from yolokit.utils.io import check_output_file

        check_output_file(f, "ONNX file")  # before tracing
    prepared = prepare_for_export(model, nms_free)
    shape_hw = _export_shape(imgsz, int(max(float(s) for s in prepared.stride)))
    raw = _trace_to_onnx(prepared, shape_hw, dynamic, nms_free, opset)
    props = _metadata(prepared, shape_hw, dynamic, nms_free)
    if f is not None and not isinstance(f, io.BytesIO):  # a file records when it was written (bytes stay stable)
        from yolokit.weights.metadata import utc_now_iso

        props["created"] = json.dumps(utc_now_iso())
    data = _finish_graph(raw, props, _output_dims(prepared, shape_hw, dynamic, nms_free))
    if half:
        from yolokit.export.fp16 import convert_fp16

        data = convert_fp16(data)
    logger.debug("exported ONNX graph: %d bytes, imgsz %s, dynamic=%s, nms_free=%s", len(data), shape_hw, dynamic,
                 nms_free)
    if isinstance(f, io.BytesIO):
        f.write(data)
        return data
    if f is None:
        return data
    from yolokit.utils.dist import is_main_process
    from yolokit.utils.io import atomic_write_bytes

    path = Path(f)
    if is_main_process():
        atomic_write_bytes(path, data)
        logger.info("ONNX model saved to %s (%s)", path, format_size(len(data)))
    return path


def read_onnx_metadata(source: str | Path | bytes) -> dict[str, Any]:
    """The yolokit ``metadata_props`` of an ONNX file (path or bytes), JSON-decoded; ``names`` keys become ints.

    Uses the ``onnx`` package; the runtime backend reads the same values through ONNX Runtime instead.
    """
    onnx = require("onnx")
    proto = onnx.load_from_string(source) if isinstance(source, bytes) else onnx.load(str(source),
                                                                                      load_external_data=False)
    return decode_metadata({p.key: p.value for p in proto.metadata_props})


def decode_metadata(props: dict[str, str]) -> dict[str, Any]:
    """``metadata_props`` (JSON text values) -> Python values; ``names`` keys become ints; unknown keys kept."""
    decoded: dict[str, Any] = {}
    for key, value in props.items():
        try:
            decoded[key] = json.loads(value)
        except (TypeError, ValueError, RecursionError):  # RecursionError: a hostile file's deeply nested JSON
            decoded[key] = value  # a foreign producer's plain-text property (checked as a value by its reader)
    if isinstance(decoded.get("names"), dict):
        decoded["names"] = {int(k): str(v) for k, v in decoded["names"].items()}
    return decoded
