"""The format table: one model as PyTorch fp32, ONNX fp32 / fp16 / INT8 and TorchScript, measured side by side.

``benchmark(model, data=, imgsz=)`` exports each format into a temporary folder with the checked exporter
(:func:`yolokit.deploy.pipeline.export_model`; ONNX graphs with a fixed ``imgsz`` input, ``dynamic=False``; INT8 with
``force=True`` so the row exists even over budget, flagged in ``note``), then measures:

- **size**: the file's bytes in MB (1 MB = 10^6 bytes; PyTorch: the fp32 ``.safetensors`` file);
- **latency**: median ms of one batch-1 forward pass at ``imgsz`` (no pre/post-processing), all rows timed
  together, interleaved, in an order rotated each round (:func:`yolokit.export.latency.paired_latency`), so machine
  drift favours no row; ONNX Runtime and torch get the same thread count;
- **mAP50-95, mAP50** on the val split of ``data`` (square ``imgsz`` letterbox for every row), and the **drop**
  vs PyTorch in points (1 point = 0.01 mAP); for a classifier **top-1, top-5** (row keys ``top1``, ``top5``) and
  the top-1 drop.

Rows are logged as a table and written to ``<out>/benchmark.json`` (atomic, main process only).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import torch

from yolokit.config import ExportConfig, make_config

__all__ = ["benchmark", "format_table", "ROWS"]

ROWS = ("pytorch-fp32", "onnx-fp32", "onnx-fp16", "onnx-int8", "torchscript-fp32")

logger = logging.getLogger(__name__)


def _export(model: Any, row: str, folder: Path, imgsz: int, data: str | None, source: Path | None, threads: int,
            int8: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(backend, row fields) for one ONNX / TorchScript row."""
    from yolokit.backends.onnxruntime_backend import OnnxRuntimeBackend
    from yolokit.backends.torchscript_backend import TorchScriptBackend
    from yolokit.deploy.pipeline import export_model

    fmt, precision = row.split("-")
    options: dict[str, Any] = {"format": fmt, "imgsz": imgsz, "dynamic": False, "data": data or ""}
    if precision == "fp16":
        options["half"] = True
    if precision == "int8":
        options.update({"int8": True, "force": True, **int8})
    cfg = make_config(ExportConfig, options)
    result = export_model(model, cfg, folder / f"model-{row}.{'onnx' if fmt == 'onnx' else 'torchscript'}",
                          source=source, threads=threads)
    backend = (OnnxRuntimeBackend if fmt == "onnx" else TorchScriptBackend)(result.path, num_threads=threads)
    scores = (result.top1, result.top5) if getattr(model, "task", "detect") == "classify" else (result.map50_95,
                                                                                              result.map50)
    fields = {"size_mb": result.size_bytes / 1e6, "map50_95": scores[0], "map50": scores[1], "note": ""}
    if result.int8 is not None:
        fields["note"] = f"form {result.int8.chosen}" + ("" if result.int8.within_budget else ", OVER BUDGET")
        if not result.int8.faster:
            fields["note"] += ", not faster than fp32"
    return backend, fields


def _pytorch(model: Any, folder: Path, imgsz: int, data: str | None, threads: int) -> tuple[Any, dict[str, Any]]:
    from yolokit.backends.torch_backend import TorchBackend
    from yolokit.deploy.checks import evaluate_backend
    from yolokit.weights import save_weights

    size = save_weights(model, folder / "model.safetensors").stat().st_size
    backend = TorchBackend(model, num_threads=threads)
    task = str(getattr(model, "task", "detect"))
    maps = evaluate_backend(backend, data, imgsz, rect=False, task=task) if data else (None, None)
    return backend, {"size_mb": size / 1e6, "map50_95": maps[0], "map50": maps[1], "note": "eager fused"}


def benchmark(model: Any, *, data: str | None = None, imgsz: int = 640, source: str | Path | None = None,
              rows: tuple[str, ...] = ROWS, out: str | Path = "runs/benchmark", threads: int | None = None,
              rounds: int = 30, int8: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Measure ``rows`` of :data:`ROWS` (module docstring) -> one dict per row.

    Args:
        model: the PyTorch ``DetectionModel`` (not changed).
        data: dataset YAML (mAP on its val split; INT8 calibration on its train split). Without it the INT8 row
            is skipped and no mAP is measured.
        imgsz: input size (square).
        source: the weights file (its SHA-256 goes into the exported files' metadata).
        rows: which rows to measure.
        out: folder of ``benchmark.json``.
        threads: threads for every engine (default: physical cores or ``OMP_NUM_THREADS``).
        rounds: timed rounds (each runs every row once).
        int8: extra INT8 export settings (``calib_images``, ``calib_method``, ``int8_budget``).
    """
    from yolokit.export.latency import paired_latency
    from yolokit.utils.dist import is_main_process
    from yolokit.utils.io import check_output_dir
    from yolokit.utils.threads import resolve_threads

    if is_main_process():  # an unwritable out= fails now, not after minutes of exports and timing
        check_output_dir(out, "benchmark output folder", "choose a writable folder with out=...")
    threads = resolve_threads(threads)
    rows = tuple(r for r in rows if data or r != "onnx-int8")
    backends, table = {}, {}
    with tempfile.TemporaryDirectory(prefix="yolokit-benchmark-") as tmp:
        folder = Path(tmp)
        for row in rows:
            if row == "pytorch-fp32":
                backends[row], table[row] = _pytorch(model, folder, imgsz, data, threads)
            else:
                backends[row], table[row] = _export(model, row, folder, imgsz, data, Path(source) if source else None,
                                                    threads, int8 or {})
        x = torch.rand(1, 3, imgsz, imgsz)
        stats = paired_latency({row: (lambda b=b: b(x)) for row, b in backends.items()}, rounds=rounds, warmup=3)
    return _finish(rows, table, stats, imgsz, threads, out, classify=getattr(model, "task", "detect") == "classify")


def _finish(rows: tuple[str, ...], table: dict[str, dict[str, Any]], stats: dict[str, Any], imgsz: int,
            threads: int, out: str | Path, classify: bool = False) -> list[dict[str, Any]]:
    keys = ("top1", "top5") if classify else ("map50_95", "map50")
    from yolokit.utils.dist import is_main_process
    from yolokit.utils.io import atomic_write_json

    base = table.get("pytorch-fp32", {}).get("map50_95")
    result = []
    for row in rows:
        fields = table[row]
        drop = None if base is None or fields["map50_95"] is None else 100.0 * (base - fields["map50_95"])
        result.append({"format": row, "size_mb": round(fields["size_mb"], 3),
                       "latency_ms": round(stats[row].median_ms, 3), keys[0]: fields["map50_95"],
                       keys[1]: fields["map50"], "drop_points": None if drop is None else round(drop, 3),
                       "note": fields["note"], "imgsz": imgsz, "threads": threads})
    logger.info("\n%s", format_table(result))
    if is_main_process():
        path = Path(out) / "benchmark.json"
        atomic_write_json(path, result)
        logger.info("benchmark written to %s", path)
    return result


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table (MB = 10^6 bytes, ms median batch 1, drop in mAP50-95 points; a
    classifier's rows: top-1 / top-5 and the top-1 drop)."""
    def number(value: Any, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    keys, titles = (("top1", "top5"), ("top-1", "top-5")) if rows and "top1" in rows[0] else \
        (("map50_95", "map50"), ("mAP50-95", "mAP50"))
    lines = [f"{'format':<18}{'size MB':>9}{'latency ms':>12}{titles[0]:>10}{titles[1]:>8}{'drop':>7}  note"]
    for row in rows:
        lines.append(f"{row['format']:<18}{number(row['size_mb'], 2):>9}{number(row['latency_ms'], 2):>12}"
                     f"{number(row[keys[0]], 4):>10}{number(row[keys[1]], 4):>8}"
                     f"{number(row['drop_points'], 2):>7}  {row['note']}")
    return "\n".join(lines)

