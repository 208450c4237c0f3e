"""INT8 post-training static quantization of yolokit ONNX graphs with ONNX Runtime, checked for speed and accuracy.

:func:`quantize_int8` does, in order:

1. **Pre-process** the FP32 graph (:func:`prepare_graph`): ONNX Runtime's ``quant_pre_process`` (symbolic shape
   inference, basic graph optimisation), then :func:`yolokit.export.graph_tools.fold_static_dims`.
2. **Calibrate once** (:func:`calibrate`) on the letterboxed calibration images with ``minmax``, ``percentile`` or
   ``entropy``, in chunks of :data:`CALIB_CHUNK` images (bounded memory); the activation ranges of every tensor any
   form needs are kept in a cache that each quantization below reuses.
3. **Quantize every form** of :data:`FORMS` (:func:`quantize_form`): weights int8 symmetric per channel, activations
   uint8 asymmetric (the u8 x s8 integer kernels' fast path on x86), the head's decode (DFL, anchors, ``dist2bbox``,
   final ``Sigmoid``/``Mul``/``Concat``) left in float via ``nodes_to_exclude``
   (:func:`yolokit.export.graph_tools.decode_nodes`).
4. **Time** every form against the FP32 graph in ONNX Runtime with the same threads, interleaved
   (:func:`yolokit.export.latency.paired_latency`, median of per-round ratios).
5. **Measure mAP** with the caller's ``evaluate`` (FP32 once, then the forms from the fastest down) and keep the
   fastest form whose mAP50-95 drop is within ``budget`` points (a classifier's ``evaluate`` gives top-1 / top-5:
   the budget is then on top-1, ``metric="top-1"``). If none is, a **sensitivity pass**
   (:mod:`yolokit.export.sensitivity`) keeps the layers that add the most output error in float until the budget
   holds; if it never does, ``ExportError`` with both numbers and what to try (``force=True`` writes the best
   attempt anyway, flagged in the report).

The :class:`Int8Report` (every candidate's size, latency and mAP, the choice, the layers kept in float, the
calibration set) goes into the file's metadata. ``onnx`` and ``onnxruntime`` are imported inside the functions.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from yolokit.config import CALIB_METHODS
from yolokit.errors import ConfigError, ExportError
from yolokit.export.calibration import CalibrationReader, CalibrationSet
from yolokit.export.int8_forms import (
    FORMS,
    FULL_OPS,
    Candidate,
    QuantForm,
    calibration_method,
    drop_points,
    quantize_form,
)

__all__ = ["QuantForm", "FORMS", "FULL_OPS", "CALIB_METHODS", "Candidate", "Int8Report", "quantize_int8",
           "prepare_graph", "calibrate", "quantize_form", "Evaluate"]

logger = logging.getLogger(__name__)

CALIB_CHUNK = 16  # calibration images per ORT collection pass (its collectors hold every output of a pass)
Evaluate = Callable[[bytes], tuple[float, float]]  # ONNX bytes -> (mAP50-95, mAP50)


@dataclass
class Int8Report:
    """What :func:`quantize_int8` measured and chose (``as_metadata()`` is written into the file)."""

    chosen: str
    calibration: dict[str, Any]
    settings: dict[str, Any]
    fp32: dict[str, Any]
    int8: dict[str, Any]
    candidates: list[dict[str, Any]]
    budget: float
    drop_points: float
    within_budget: bool
    faster: bool
    kept_float: list[str] = field(default_factory=list)
    sensitivity: list[dict[str, Any]] = field(default_factory=list)
    float_cost: dict[str, float] = field(default_factory=dict)
    forced: bool = False
    metric: str = "mAP50-95"  # what the budget is judged on (a classifier's: "top-1"); the values sit in map50_95

    def as_metadata(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """Human-readable summary lines (size, latency and mAP of FP32 vs INT8; the choice)."""
        f, q = self.fp32, self.int8
        speed = "faster" if self.faster else "NOT faster"
        return [f"INT8 form {self.chosen}: {q['size_mb']:.2f} MB vs FP32 {f['size_mb']:.2f} MB "
                f"({f['size_mb'] / max(q['size_mb'], 1e-9):.2f}x smaller)",
                f"INT8 latency {q['latency_ms']:.2f} ms vs FP32 {f['latency_ms']:.2f} ms: ratio "
                f"{q['ratio_vs_fp32']:.3f} ({speed} than FP32 on this machine)",
                f"INT8 {self.metric} {q['map50_95']:.4f} vs FP32 {f['map50_95']:.4f}: drop {self.drop_points:.2f} "
                "points "
                f"(budget {self.budget:g}{'' if self.within_budget else ', EXCEEDED (force=True)'})"]


def prepare_graph(fp32: bytes, workdir: Path) -> Any:
    """``quant_pre_process`` (symbolic shape inference with merged symbols; ONNX shape inference only if that
    fails) + :func:`fold_static_dims` -> the ``ModelProto`` every form is quantized from."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from yolokit.export.graph_tools import fold_static_dims

    source, target = workdir / "fp32.onnx", workdir / "prepared.onnx"
    source.write_bytes(fp32)
    leftover = Path("sym_shape_infer_temp.onnx")  # ORT writes it into the working directory when inference fails
    existed = leftover.exists()
    try:
        quant_pre_process(str(source), str(target), auto_merge=True)
    except Exception as error:  # noqa: BLE001 - ORT's symbolic inference raises a bare Exception
        logger.debug("symbolic shape inference failed (%s); using ONNX shape inference", error)
        if not existed:
            leftover.unlink(missing_ok=True)
        quant_pre_process(str(source), str(target), skip_symbolic_shape=True)
    proto = onnx.load(str(target))
    folded = fold_static_dims(proto)
    logger.debug("pre-processed graph: %d nodes, %d static dimension reads folded", len(proto.graph.node), folded)
    return proto


def calibrate(prepared: Path, reader: CalibrationReader, method: str, cache: Path, workdir: Path) -> Path:
    """Collect the activation ranges of every tensor a form of :data:`FORMS` may quantize into ``cache`` (JSON)."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    calibrator = create_calibrator(prepared, list(FULL_OPS), augmented_model_path=str(workdir / "augmented.onnx"),
                                   calibrate_method=calibration_method(method))
    for start in range(0, len(reader), CALIB_CHUNK):
        reader.set_range(start, start + CALIB_CHUNK)
        calibrator.collect_data(reader)
    save_tensors_data(calibrator.compute_data(), cache)
    return cache


def time_candidates(fp32: bytes, candidates: Sequence[Candidate], sample: Any, threads: int | None,
                    rounds: int = 30) -> dict[str, float]:
    """Paired latency of every candidate and the FP32 graph on ``sample`` ``(1, 3, H, W)``; fills each candidate's
    ``latency_ms`` and ``ratio`` and returns ``{"fp32_ms": ...}``."""
    from yolokit.export.latency import latency_ratio, ort_runner, ort_session, paired_latency

    runners = {"fp32": ort_runner(ort_session(fp32, threads), sample)}
    for k, candidate in enumerate(candidates):
        runners[f"int8-{k}"] = ort_runner(ort_session(candidate.data, threads), sample)
    stats = paired_latency(runners, rounds=rounds, warmup=3, min_seconds=1.0)
    for k, candidate in enumerate(candidates):
        candidate.latency_ms = stats[f"int8-{k}"].median_ms
        candidate.ratio = latency_ratio(stats, f"int8-{k}", "fp32")
    return {"fp32_ms": stats["fp32"].median_ms}


def _fastest_within_budget(candidates: list[Candidate], evaluate: Evaluate, fp32_map: float,
                           budget: float, metric: str = "mAP50-95") -> Candidate | None:
    """Evaluate candidates fastest first; the first within ``budget`` (the others stay unevaluated)."""
    for candidate in sorted(candidates, key=lambda c: c.ratio):
        candidate.map, candidate.map50 = evaluate(candidate.data)
        logger.info("INT8 %s: latency ratio %.3f, %s %.4f (drop %.2f points)", candidate.form.name,
                    candidate.ratio, metric, candidate.map, drop_points(fp32_map, candidate))
        if drop_points(fp32_map, candidate) <= budget:
            return candidate
    return None


@dataclass(frozen=True)
class _Job:
    """Everything a quantization run shares (paths in the temporary folder, settings, measurement hooks)."""

    prepared: Path
    cache: Path
    workdir: Path
    excluded: tuple[str, ...]
    method: str
    evaluate: Evaluate
    threads: int | None
    samples: tuple[Any, ...] = field(repr=False)
    rounds: int = 8
    metric: str = "mAP50-95"

    @property
    def sample(self) -> Any:
        """The ``(1, 3, H, W)`` input latency is measured on."""
        return self.samples[0]


def quantize_int8(fp32: bytes, calibration: CalibrationSet, *, shape_hw: tuple[int, int], stride: int,
                  evaluate: Evaluate, method: str = "minmax", budget: float = 1.0, force: bool = False,
                  threads: int | None = None, forms: Sequence[QuantForm] = FORMS,
                  sensitivity_rounds: int = 8, preprocess: Callable[[Any], Any] | None = None,
                  metric: str = "mAP50-95") -> tuple[bytes, Int8Report]:
    """Quantize the FP32 ONNX graph ``fp32`` (see the module docstring) -> (INT8 ONNX bytes, report).

    Args:
        fp32: the FP32 graph (yolokit export; fixed ``shape_hw`` input size preferred).
        calibration: the calibration images.
        shape_hw: the input size calibration and timing use.
        stride: the model's largest stride (letterbox).
        evaluate: ONNX bytes -> (mAP50-95, mAP50) on the validation split (a classifier: (top-1, top-5)).
        method: ``minmax``, ``percentile`` or ``entropy``.
        budget: largest allowed mAP50-95 drop, in points (1.0 = 0.01 mAP).
        force: write the best attempt even when the budget cannot be met (flagged in the report).
        threads: ONNX Runtime intra-op threads for timing (default: as the ONNX Runtime backend).
        forms: the candidate forms.
        sensitivity_rounds: at most this many greedy rounds (1, 2, 4, ... layers kept in float).
        preprocess: the calibration images' preprocessing instead of the letterbox (a classifier's eval crop).
        metric: the name of ``evaluate``'s first value in logs, errors and the report (``"top-1"``).

    Raises:
        ExportError: the budget is not met even after the sensitivity pass, and ``force`` is False.
    """
    from yolokit.export.graph_tools import decode_nodes

    calibration_method(method)
    if budget < 0:
        raise ConfigError(f"int8_budget must be >= 0 (mAP50-95 points), got {budget}: pass e.g. int8_budget=1.0")
    with tempfile.TemporaryDirectory(prefix="yolokit-int8-") as tmp:
        workdir = Path(tmp)
        proto = prepare_graph(fp32, workdir)
        prepared = workdir / "prepared-folded.onnx"
        prepared.write_bytes(proto.SerializeToString())
        reader = CalibrationReader(calibration.paths, shape_hw, stride, preprocess)
        logger.info("INT8: calibrating on %d images (%s)", calibration.count, method)
        cache = calibrate(prepared, reader, method, workdir / "ranges.json", workdir)
        samples = tuple(reader.load(path) for path in calibration.paths[:4])
        job = _Job(prepared, cache, workdir, tuple(decode_nodes(proto)), method, evaluate, threads, samples,
                   sensitivity_rounds, metric)
        return _choose(fp32, job, forms, calibration, budget, force)


def _choose(fp32: bytes, job: _Job, forms: Sequence[QuantForm], calibration: CalibrationSet, budget: float,
            force: bool) -> tuple[bytes, Int8Report]:
    """Quantize, time and evaluate the forms; sensitivity pass when none is within budget."""
    candidates = [Candidate(form, quantize_form(job.prepared, form, job.excluded, job.cache, job.workdir, job.method))
                  for form in forms]
    timing = time_candidates(fp32, candidates, job.sample, job.threads)
    for candidate in sorted(candidates, key=lambda c: c.ratio):
        logger.info("INT8 form %-24s %6.2f MB  %7.2f ms  ratio %.3f vs FP32 %.2f ms", candidate.form.name,
                    len(candidate.data) / 1e6, candidate.latency_ms, candidate.ratio, timing["fp32_ms"])
    fp32_map, fp32_map50 = job.evaluate(fp32)
    chosen, rounds, cost = _fastest_within_budget(candidates, job.evaluate, fp32_map, budget, job.metric), [], {}
    if chosen is None:
        from yolokit.export.sensitivity import sensitivity_pass

        fastest = min(candidates, key=lambda c: c.ratio)
        logger.warning("INT8: no form is within the %.2f-point budget; keeping the most sensitive layers of %s in "
                       "float", budget, fastest.form.name)
        chosen, rounds, cost = sensitivity_pass(fp32, job, fastest, fp32_map, budget, time_candidates)
    within = drop_points(fp32_map, chosen) <= budget
    if not within and not force:
        raise ExportError(_over_budget_message(fp32_map, chosen, budget, rounds, job.metric))
    report = _report(chosen, candidates, calibration, job.method, timing, fp32, (fp32_map, fp32_map50), budget,
                     rounds, forced=not within)
    report.float_cost, report.metric = cost, job.metric
    for line in report.lines():
        (logger.info if within and report.faster else logger.warning)(line)
    return chosen.data, report


def _over_budget_message(fp32_map: float, best: Candidate, budget: float, rounds: list[dict[str, Any]],
                         metric: str = "mAP50-95") -> str:
    kept = len(best.kept_float)
    return (f"INT8 {metric} {best.map:.4f} vs FP32 {fp32_map:.4f}: drop {drop_points(fp32_map, best):.2f} points "
            f"exceeds int8_budget={budget:g} even with {kept} layer(s) kept in float after {len(rounds)} sensitivity "
            "round(s): calibrate on more representative images (calib_images=300 from the training split), try "
            "calib_method=percentile or entropy, raise int8_budget, or pass force=True to write it anyway")


def _report(chosen: Candidate, candidates: list[Candidate], calibration: CalibrationSet, method: str,
            timing: dict[str, float], fp32: bytes, fp32_maps: tuple[float, float], budget: float,
            rounds: list[dict[str, Any]], forced: bool) -> Int8Report:
    fp32_summary = {"size_mb": round(len(fp32) / 1e6, 3), "latency_ms": round(timing["fp32_ms"], 3),
                    "map50_95": round(fp32_maps[0], 5), "map50": round(fp32_maps[1], 5)}
    settings = {"method": method, "format": chosen.form.quant_format, "op_types": list(chosen.form.op_types),
                "shared_concat_scales": chosen.form.shared_concat_scales, "weights": "int8 symmetric per-channel",
                "activations": "uint8 asymmetric per-tensor", "reduce_range": False, "decode": "float32"}
    return Int8Report(chosen=chosen.form.name, calibration=calibration.as_metadata(), settings=settings,
                      fp32=fp32_summary, int8=chosen.summary(), candidates=[c.summary() for c in candidates],
                      budget=float(budget), drop_points=round(drop_points(fp32_maps[0], chosen), 3),
                      within_budget=not forced, faster=chosen.ratio < 1.0, kept_float=list(chosen.kept_float),
                      sensitivity=rounds, forced=forced)
