"""Paired (interleaved) latency measurement, so machine drift does not favour any of the things compared.

:func:`paired_latency` calls every runner once per round, in an order rotated each round (round k starts with
runner ``k mod n``), after ``warmup`` untimed rounds, until ``rounds`` rounds are done and at least ``min_seconds``
have passed (capped at ``max_rounds``). Each runner's figure is the median of its own call times; ratios are the
median of the per-round ratios (both calls of a ratio ran side by side). :func:`ort_session` builds the ONNX Runtime
CPU session every measurement in yolokit uses (same threads, same options as the ONNX Runtime backend).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["LatencyStats", "paired_latency", "latency_ratio", "ort_session", "ort_runner"]


@dataclass(frozen=True)
class LatencyStats:
    """One runner's call times in milliseconds: median, 10th and 90th percentile, and every sample."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    samples_ms: tuple[float, ...]

    def as_dict(self) -> dict[str, float]:
        return {"median_ms": round(self.median_ms, 3), "p10_ms": round(self.p10_ms, 3),
                "p90_ms": round(self.p90_ms, 3), "calls": len(self.samples_ms)}


def _stats(samples: list[float]) -> LatencyStats:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]  # noqa: E731
    return LatencyStats(statistics.median(ordered), pick(0.1), pick(0.9), tuple(samples))


def paired_latency(runners: Mapping[str, Callable[[], Any]], rounds: int = 30, warmup: int = 3,
                   min_seconds: float = 0.0, max_rounds: int = 500) -> dict[str, LatencyStats]:
    """Interleaved timing of ``runners`` (name -> zero-argument callable); see the module docstring."""
    names = list(runners)
    if not names:
        return {}
    times: dict[str, list[float]] = {name: [] for name in names}
    start = time.perf_counter()
    for k in range(warmup + max_rounds):
        if k == warmup:
            start = time.perf_counter()
        if k >= warmup + rounds and time.perf_counter() - start >= min_seconds:
            break
        shift = k % len(names)
        for name in names[shift:] + names[:shift]:
            begin = time.perf_counter()
            runners[name]()
            if k >= warmup:
                times[name].append((time.perf_counter() - begin) * 1000.0)
    return {name: _stats(samples) for name, samples in times.items()}


def latency_ratio(stats: Mapping[str, LatencyStats], name: str, baseline: str) -> float:
    """Median over rounds of ``time(name) / time(baseline)`` (calls of the same round ran side by side)."""
    pairs = zip(stats[name].samples_ms, stats[baseline].samples_ms, strict=True)
    return float(statistics.median(a / b for a, b in pairs if b > 0))


def ort_session(model: bytes | str, threads: int | None = None) -> Any:
    """A CPU ``InferenceSession`` with the ONNX Runtime backend's options (``threads`` intra-op threads, default
    :func:`yolokit.utils.threads.resolve_threads`; one inter-op thread; full graph optimisation; no spinning after
    a run)."""
    from yolokit.export.onnx import require
    from yolokit.utils.threads import resolve_threads

    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = resolve_threads(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def ort_runner(session: Any, array: Any, input_name: str = "images") -> Callable[[], Any]:
    """A zero-argument callable running ``session`` on ``array`` (for :func:`paired_latency`)."""
    feed = {input_name: array}
    return lambda: session.run(None, feed)
