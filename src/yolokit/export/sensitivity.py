"""The INT8 sensitivity pass: keep the layers that hurt most in float until the mAP budget holds.

A *layer* is one convolution module with its activation (``/model.2/m.0/cv1/conv/Conv`` and ``.../act/Sigmoid``,
``.../act/Mul`` form ``/model.2/m.0/cv1``), or the nodes directly under a block (``/model.2/Concat``). Each layer's
sensitivity is the output error it *adds*: on a few calibration images, the relative L2 error
``||int8 - fp32|| / ||fp32||`` of its output tensor minus that of its input tensor (errors accumulate through the
network, so the difference is what the layer itself contributes), measured on the QDQ form of the graph, whose
float tensors between the Q/DQ pairs are the quantized model's values. Greedy rounds then keep the top 1, 2, 4, 8,
... layers in float (up to half of them), re-quantize with the cached ranges and re-measure mAP, stopping at the
first round within the budget. The report names the layers and what keeping them cost in size and latency.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["layer_groups", "rank_layers", "sensitivity_pass", "ROUND_IMAGES"]

logger = logging.getLogger(__name__)

ROUND_IMAGES = 4  # calibration images used to rank the layers


def _layer_key(name: str) -> str:
    """The layer a node belongs to: its module path, with a convolution's ``conv``/``act`` parts folded into it."""
    parts = name.split("/")[:-1]
    if parts and parts[-1] in ("conv", "act"):
        parts = parts[:-1]
    return "/".join(parts)


def layer_groups(proto: Any, excluded: set[str]) -> dict[str, dict[str, Any]]:
    """Layer -> ``{"nodes": [...], "input": tensor, "output": tensor}`` for every module with a quantizable node.

    A convolution module (``/model.2/m.0/cv1``: its Conv and its activation's Sigmoid/Mul) is one layer; nodes
    directly under a block (``/model.2/Concat``, ``/model.2/m.0/Add``, ``/model.9/Resize``) form the block's own
    layer. Input = the first node's first input, output = the last node's output (graph order).
    """
    from yolokit.export.int8_forms import FULL_OPS

    floats = {info.name for info in (*proto.graph.value_info, *proto.graph.input, *proto.graph.output)
              if info.type.tensor_type.elem_type == 1}  # FLOAT: shape arithmetic (int64 Concat, ...) is not a layer
    groups: dict[str, dict[str, Any]] = {}
    for node in proto.graph.node:
        if node.op_type not in FULL_OPS or node.name in excluded or not node.name.startswith("/") \
                or node.input[0] not in floats or node.output[0] not in floats:
            continue
        group = groups.setdefault(_layer_key(node.name), {"nodes": [], "input": node.input[0], "output": ""})
        group["nodes"].append(node.name)
        group["output"] = node.output[0]
    return {key: group for key, group in groups.items() if key}


def _with_outputs(data: bytes, names: list[str]) -> bytes:
    """The graph with ``names`` added as float graph outputs (those it has)."""
    import onnx
    from onnx import TensorProto, helper

    proto = onnx.load_from_string(data)
    produced = {out for node in proto.graph.node for out in node.output} | {i.name for i in proto.graph.input}
    present = {out.name for out in proto.graph.output}
    for name in names:
        if name in produced and name not in present:
            proto.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return proto.SerializeToString()


def rank_layers(prepared: bytes, qdq: bytes, groups: dict[str, dict[str, Any]], samples: list[Any],
                threads: int | None = None) -> list[tuple[str, float]]:
    """Layers sorted by added output error, largest first (see the module docstring)."""
    import numpy as np

    from yolokit.export.latency import ort_session

    tensors = sorted({g["input"] for g in groups.values()} | {g["output"] for g in groups.values()})
    sessions = [ort_session(_with_outputs(data, tensors), threads) for data in (prepared, qdq)]
    errors: dict[str, list[float]] = {}
    for sample in samples:
        runs = []
        for session in sessions:
            names = [o.name for o in session.get_outputs()]
            runs.append(dict(zip(names, session.run(None, {"images": sample}), strict=True)))
        for name in tensors:
            if name in runs[0] and name in runs[1]:
                ref, got = runs[0][name].astype(np.float64), runs[1][name].astype(np.float64)
                errors.setdefault(name, []).append(float(np.linalg.norm(got - ref) / (np.linalg.norm(ref) + 1e-12)))
    mean = {name: float(np.mean(values)) for name, values in errors.items()}
    scores = {prefix: max(0.0, mean.get(g["output"], 0.0) - mean.get(g["input"], 0.0)) for prefix, g in groups.items()}
    return sorted(scores.items(), key=lambda item: -item[1])


def _schedule(count: int) -> list[int]:
    """1, 2, 4, ... layers kept in float, up to half of ``count`` (at least 1)."""
    limit, ks, k = max(1, count // 2), [], 1
    while k < limit:
        ks.append(k)
        k *= 2
    return [*ks, limit]


def sensitivity_pass(fp32: bytes, job: Any, fastest: Any, fp32_map: float, budget: float,
                     timer: Callable[..., dict[str, float]]) -> tuple[Any, list[dict[str, Any]], dict[str, float]]:
    """Greedy rounds (see the module docstring) on ``fastest``'s form -> (chosen candidate, rounds, cost).

    The chosen candidate is the first within ``budget``, else the one with the highest mAP; its ``kept_float``
    names the layers left in float, and it is timed against FP32 beside the fully quantized ``fastest`` (``cost``:
    both sizes and latencies).
    """
    import onnx

    from yolokit.export.int8_forms import Candidate, drop_points, quantize_form

    proto = onnx.load(str(job.prepared))
    groups = layer_groups(proto, set(job.excluded))
    form = fastest.form
    qdq_form = form if form.quant_format == "QDQ" else dataclasses.replace(form, name=form.name + "-qdq",
                                                                          quant_format="QDQ")
    qdq = fastest.data if qdq_form is form else quantize_form(job.prepared, qdq_form, job.excluded, job.cache,
                                                                job.workdir, job.method)
    ranking = rank_layers(Path(job.prepared).read_bytes(), qdq, groups, job.samples[:ROUND_IMAGES], job.threads)
    logger.info("INT8 sensitivity ranking (added output error): %s",
                ", ".join(f"{p.strip('/')} {s:.3f}" for p, s in ranking[:8]))
    rounds: list[dict[str, Any]] = []
    best = None
    for k in _schedule(len(ranking))[: max(1, job.rounds)]:
        kept = tuple(prefix.strip("/") for prefix, _ in ranking[:k])
        nodes = [n for prefix, _ in ranking[:k] for n in groups[prefix]["nodes"]]
        data = quantize_form(job.prepared, form, [*job.excluded, *nodes], job.cache, job.workdir, job.method)
        candidate = Candidate(form, data, kept_float=kept)
        candidate.map, candidate.map50 = job.evaluate(data)
        drop = drop_points(fp32_map, candidate)
        rounds.append({"kept_layers": k, "layers": list(kept), "size_mb": round(len(data) / 1e6, 3),
                       "map50_95": round(candidate.map, 5), "drop_points": round(drop, 3)})
        logger.info("INT8 sensitivity round: %d layer(s) in float -> %s %.4f (drop %.2f points)", k,
                    getattr(job, "metric", "mAP50-95"), candidate.map, drop)
        if best is None or candidate.map > best.map:
            best = candidate
        if drop <= budget:
            break
    timer(fp32, [fastest, best], job.sample, job.threads)
    cost = {"all_int8_size_mb": round(len(fastest.data) / 1e6, 3), "chosen_size_mb": round(len(best.data) / 1e6, 3),
            "all_int8_latency_ms": round(fastest.latency_ms, 3), "chosen_latency_ms": round(best.latency_ms, 3),
            "all_int8_ratio_vs_fp32": round(fastest.ratio, 3), "chosen_ratio_vs_fp32": round(best.ratio, 3)}
    logger.info("INT8 sensitivity: %d layer(s) kept in float (%s) cost %+.2f MB and %+.2f ms", len(best.kept_float),
                ", ".join(best.kept_float), cost["chosen_size_mb"] - cost["all_int8_size_mb"],
                cost["chosen_latency_ms"] - cost["all_int8_latency_ms"])
    return best, rounds, cost
