"""``export_model``: write an ONNX (fp32, fp16, INT8, optionally with embedded NMS) or TorchScript file, checked.

Every export, after building the graph:

1. records its metadata (the exporter's ``names``, ``stride``, ``imgsz``, ``task``, ``spec``... plus ``precision``,
   ``head`` = ``nms`` | ``end2end`` | ``embedded_nms``, the embedded NMS settings, the INT8 report with its
   calibration hash, and ``source_sha256`` of the weights file exported);
2. **parity**: runs the file (ONNX Runtime, or TorchScript) and the PyTorch weights on a real image
   (:func:`yolokit.deploy.checks.parity_image`) and fails with ``ExportError`` when the max abs difference of boxes
   or scores exceeds the precision's tolerance (:data:`yolokit.deploy.checks.TOLERANCES`); INT8 is judged by mAP
   (its budget) instead, its difference is reported only;
3. measures its **latency** (median, batch 1) and, with ``data=``, its **mAP** on the val split with square
   ``imgsz`` batches, the same protocol for every format (INT8: taken from the quantization report, which measured
   it beside FP32); a classifier's **top-1 / top-5** instead, and its INT8 budget is on top-1 (points);
4. writes the figures into the file's metadata (``parity``, ``latency_ms``, ``map50_95``, ``map50``) and the file
   atomically (main process only), and logs them.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from yolokit.config import ExportConfig
from yolokit.deploy.checks import TOLERANCES, compare_outputs, evaluate_backend, parity_image
from yolokit.errors import ExportError

__all__ = ["ExportResult", "export_model", "set_onnx_metadata", "int8_path"]

logger = logging.getLogger(__name__)


@dataclass
class ExportResult:
    """What :func:`export_model` wrote and measured."""

    path: Path
    format: str
    precision: str
    head: str
    size_bytes: int
    parity: dict[str, Any]
    latency_ms: float
    map50_95: float | None = None
    map50: float | None = None
    int8: Any = None
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)
    top1: float | None = None  # classifiers: top-1 / top-5 on the val split (with data=) instead of mAP
    top5: float | None = None


def _task(model: Any) -> str:
    return str(getattr(model, "task", "detect"))


def _val_iou(model: Any) -> float | None:
    """The NMS IoU the model's family validates with (YOLOv5: the original's 0.6), else None (ValConfig's)."""
    from yolokit.models.yolov5 import inference_defaults

    return inference_defaults(getattr(model, "spec", None), "val").get("iou")


def _classify_preprocess(model: Any, shape_hw: tuple[int, int]) -> Any:
    """A classifier's calibration preprocessing: BGR image -> (1, 3, H, W) float32 as it predicts."""
    from yolokit.predict.classify import classify_preprocess

    metadata = getattr(model, "metadata", None)
    return lambda image: classify_preprocess([image], shape_hw, metadata).numpy()


def int8_path(path: Path) -> Path:
    """``best.onnx`` -> ``best_int8.onnx`` (unchanged when the stem already ends in ``_int8``)."""
    return path if path.stem.endswith("_int8") else path.with_name(f"{path.stem}_int8{path.suffix}")


def set_onnx_metadata(data: bytes, values: dict[str, Any]) -> bytes:
    """ONNX bytes with ``values`` written into ``metadata_props`` (JSON text; existing keys replaced)."""
    import onnx

    proto = onnx.load_from_string(data)
    kept = [p for p in proto.metadata_props if p.key not in values]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value, default=str)
    return proto.SerializeToString()


def _head(cfg: ExportConfig, task: str) -> str:
    if task == "classify":
        return "classify"  # (B, nc) probabilities: no NMS
    return "embedded_nms" if cfg.embed_nms else ("end2end" if not cfg.nms else "nms")


def _base_metadata(cfg: ExportConfig, precision: str, source: Path | None, task: str) -> dict[str, Any]:
    from yolokit.utils.io import sha256_file
    from yolokit.weights.metadata import utc_now_iso

    values: dict[str, Any] = {"precision": precision, "head": _head(cfg, task),
                              "source_sha256": sha256_file(source) if source and Path(source).is_file() else None,
                              "created": utc_now_iso()}  # when the file was written ('yolokit inspect' shows it)
    if cfg.embed_nms:
        values["embedded_nms"] = {"conf": cfg.conf, "iou": cfg.iou, "max_det": cfg.max_det,
                                  "agnostic": cfg.agnostic_nms}
        values["nms_free"] = True  # the file's output is final rows: no NMS after it
    return values


def _reference(model: Any, x: torch.Tensor, cfg: ExportConfig) -> torch.Tensor:
    """The PyTorch model's answer on ``x``: the head's output, or (embedded NMS) the padded final rows."""
    from yolokit.export.onnx import prepare_for_export

    prepared = prepare_for_export(model, nms_free=not cfg.nms)
    with torch.inference_mode():
        raw = prepared(x)
    if not cfg.embed_nms:
        return raw
    from yolokit.ops.nms import non_max_suppression

    dets = non_max_suppression(raw, cfg.conf, cfg.iou, agnostic=cfg.agnostic_nms, max_det=cfg.max_det)
    out = torch.zeros(len(dets), cfg.max_det, 6)
    for b, det in enumerate(dets):
        out[b, : len(det)] = det
    return out


def _parity(model: Any, backend: Any, cfg: ExportConfig, precision: str, shape_hw: tuple[int, int]) -> dict:
    """Run both on the parity image; raise ``ExportError`` above tolerance (not for INT8)."""
    x, name = parity_image(cfg.data or None, shape_hw, backend.stride, task=_task(model), metadata=backend.metadata)
    final = cfg.embed_nms or not cfg.nms
    diff = compare_outputs(backend(x).numpy(), _reference(model, x, cfg).numpy(), final=final,
                           conf=cfg.conf if cfg.embed_nms else 0.05)
    finite = {key: (value if math.isfinite(value) else None) for key, value in diff.items()}  # None: rows differ
    result = {"image": name, "box_max_abs_px": finite["box"], "score_max_abs": finite["score"]}
    if "rows_mismatched" in diff:
        result["rows_mismatched"] = int(diff["rows_mismatched"])
    limits = TOLERANCES.get(precision)
    if limits is None:
        result["judged_by"] = "top-1 (INT8)" if _task(model) == "classify" else "mAP (INT8)"
        return result
    box_tol = limits["box_px_per_640"] * max(shape_hw) / 640
    result.update({"box_tolerance_px": box_tol, "score_tolerance": limits["score"]})
    if not (diff["box"] <= box_tol and diff["score"] <= limits["score"]):
        raise ExportError(f"exported {precision} file differs from the PyTorch weights on {name}: boxes by "
                          f"{diff['box']:.4g} px (tolerance {box_tol:.3g}), scores by {diff['score']:.4g} (tolerance "
                          f"{limits['score']:g}): report the model and settings; export without half/embed_nms to "
                          "narrow it down")
    return result


def _latency(backend: Any, shape_hw: tuple[int, int]) -> float:
    from yolokit.export.latency import paired_latency

    x = torch.rand(1, 3, *shape_hw)
    return paired_latency({"file": lambda: backend(x)}, rounds=10, warmup=2, min_seconds=0.5)["file"].median_ms


def _onnx_bytes(model: Any, cfg: ExportConfig, shape_hw: tuple[int, int], stride: int,
                threads: int | None) -> tuple[bytes, str, Any]:
    """(graph bytes, precision, INT8 report or None) before the metadata and checks."""
    from yolokit.export.onnx import export_onnx

    data = export_onnx(model, None, imgsz=shape_hw, dynamic=cfg.dynamic, nms_free=not cfg.nms, opset=cfg.opset)
    report = None
    if cfg.int8:
        from yolokit.backends.onnxruntime_backend import OnnxRuntimeBackend
        from yolokit.export.calibration import select_calibration_images
        from yolokit.export.quantize import quantize_int8

        task = _task(model)
        calibration = select_calibration_images(cfg.data, cfg.calib_images, task=task)

        def evaluate(graph: bytes) -> tuple[float, float]:
            return evaluate_backend(OnnxRuntimeBackend(graph, threads), cfg.data, max(shape_hw), nms=cfg.nms,
                                    task=task, iou=_val_iou(model))

        classify = task == "classify"
        data, report = quantize_int8(data, calibration, shape_hw=shape_hw, stride=stride, evaluate=evaluate,
                                     method=cfg.calib_method, budget=cfg.int8_budget, force=cfg.force,
                                     threads=threads, metric="top-1" if classify else "mAP50-95",
                                     preprocess=_classify_preprocess(model, shape_hw) if classify else None)
    elif cfg.half:
        from yolokit.export.fp16 import convert_fp16

        data = convert_fp16(data)
    if cfg.embed_nms:
        import onnx

        from yolokit.export.nms_graph import append_nms

        data = append_nms(onnx.load_from_string(data), conf=cfg.conf, iou=cfg.iou, max_det=cfg.max_det,
                          agnostic=cfg.agnostic_nms).SerializeToString()
    return data, ("int8" if cfg.int8 else "fp16" if cfg.half else "fp32"), report


def _measured(backend: Any, cfg: ExportConfig, shape_hw: tuple[int, int], report: Any, model: Any) -> dict[str, Any]:
    """Latency (median ms, batch 1) and, with ``data=``, mAP on the val split (INT8: from its report); a
    classifier's top-1 / top-5 instead of mAP."""
    values: dict[str, Any] = {"latency_ms": round(_latency(backend, shape_hw), 3), "map50_95": None, "map50": None}
    if _task(model) == "classify":
        if report is not None:
            values.update(top1=report.int8["map50_95"], top5=report.int8["map50"])
        elif cfg.data:
            values["top1"], values["top5"] = evaluate_backend(backend, cfg.data, max(shape_hw), task="classify")
        return values
    if report is not None:
        values.update(map50_95=report.int8["map50_95"], map50=report.int8["map50"])
    if cfg.data and (report is None or cfg.embed_nms):  # embedded NMS: measured with its baked-in conf
        values["map50_95"], values["map50"] = evaluate_backend(backend, cfg.data, max(shape_hw),
                                                               nms=not (cfg.embed_nms or not cfg.nms), rect=False,
                                                               iou=_val_iou(model))
    return values


def _torchscript(model: Any, cfg: ExportConfig, shape_hw: tuple[int, int], source: Path | None,
                 threads: int | None) -> tuple[bytes, dict[str, Any], Any]:
    import io

    from yolokit.backends.torchscript_backend import TorchScriptBackend
    from yolokit.export.torchscript import EXTRA_FILE, export_torchscript

    base = _base_metadata(cfg, "fp32", source, _task(model))
    data = export_torchscript(model, None, imgsz=shape_hw, nms_free=not cfg.nms, metadata=base)
    backend = TorchScriptBackend(data, num_threads=threads)
    checks = {"parity": _parity(model, backend, cfg, "fp32", shape_hw),
              **_measured(backend, cfg, shape_hw, None, model)}
    metadata = {**backend.metadata, **checks}
    metadata["names"] = {str(k): v for k, v in metadata["names"].items()}
    buffer = io.BytesIO()
    torch.jit.save(backend.module, buffer, _extra_files={EXTRA_FILE: json.dumps(metadata, default=str)})
    return buffer.getvalue(), {**base, **checks}, None


def _onnx(model: Any, cfg: ExportConfig, shape_hw: tuple[int, int], stride: int, source: Path | None,
          threads: int | None) -> tuple[bytes, dict[str, Any], Any]:
    from yolokit.backends.onnxruntime_backend import OnnxRuntimeBackend

    data, precision, report = _onnx_bytes(model, cfg, shape_hw, stride, threads)
    base = _base_metadata(cfg, precision, source, _task(model))
    if report is not None:
        base["quantization"] = report.as_metadata()
        base["calibration_sha256"] = report.calibration["sha256"]
    data = set_onnx_metadata(data, base)
    backend = OnnxRuntimeBackend(data, num_threads=threads)
    checks = {"parity": _parity(model, backend, cfg, precision, shape_hw),
              **_measured(backend, cfg, shape_hw, report, model)}
    return set_onnx_metadata(data, checks), {**base, **checks}, report


def export_model(model: Any, cfg: ExportConfig, path: str | Path, *, source: str | Path | None = None,
                 threads: int | None = None) -> ExportResult:
    """Export ``model`` (a ``DetectionModel``, not changed) as ``cfg`` says, checked (module docstring), to ``path``.

    Args:
        model: the PyTorch weights.
        cfg: export settings (``format`` onnx or torchscript; ``half``, ``int8``, ``embed_nms``...).
        path: the output file (INT8: the caller passes ``<stem>_int8.onnx``).
        source: the weights file ``model`` came from (its SHA-256 is recorded), if any.
        threads: ONNX Runtime / torch threads for the checks (default: as the backends).

    Raises:
        ExportError: parity above tolerance, INT8 over budget (without ``force``), or a failed export.
    """
    from yolokit.export.onnx import _export_shape
    from yolokit.utils.dist import is_main_process
    from yolokit.utils.io import atomic_write_bytes

    if cfg.format not in ("onnx", "torchscript"):
        raise ExportError(f"export_model writes onnx or torchscript files, got format={cfg.format!r}: save "
                          "safetensors/pt with YOLO.save")
    if is_main_process():
        from yolokit.utils.io import check_output_file

        check_output_file(path, f"{cfg.format} export file", "pass file= a writable path")  # before any work
    stride = int(model.stride.max())
    shape_hw = _export_shape(cfg.imgsz, stride)
    if cfg.format == "torchscript":
        data, metadata, report = _torchscript(model, cfg, shape_hw, Path(source) if source else None, threads)
    else:
        data, metadata, report = _onnx(model, cfg, shape_hw, stride, Path(source) if source else None, threads)
    path = Path(path)
    if is_main_process():
        atomic_write_bytes(path, data)
        if cfg.format == "torchscript":  # recorded as yolokit's own export: YOLO(path) loads it without trusted=True
            from yolokit.export.torchscript_trust import record_trusted

            record_trusted(data, path)
    result = ExportResult(path, cfg.format, metadata["precision"], metadata["head"], len(data), metadata["parity"],
                          metadata["latency_ms"], metadata["map50_95"], metadata["map50"], report, metadata,
                          metadata.get("top1"), metadata.get("top5"))
    _log(result)
    return result


def _log(result: ExportResult) -> None:
    parity = result.parity
    found = f"mAP50-95 {result.map50_95:.4f}, mAP50 {result.map50:.4f}" if result.map50_95 is not None else \
        f"top-1 {result.top1:.4f}, top-5 {result.top5:.4f}" if result.top1 is not None else \
        "accuracy not measured (pass data=)"
    logger.info("%s %s (%s head) saved to %s: %.2f MB, %.2f ms (batch 1), %s; parity on %s: boxes %s px, scores "
                "%s (%s)", result.format.upper(), result.precision.upper(), result.head, result.path,
                result.size_bytes / 1e6, result.latency_ms, found, Path(str(parity["image"])).name,
                parity["box_max_abs_px"], parity["score_max_abs"], parity.get("judged_by", "within tolerance"))
    if result.int8 is not None:
        for line in result.int8.lines():
            logger.info(line)
