"""Measure predict speed: preprocess / inference / postprocess / end-to-end ms per image and images/s.

    python benchmarks/predict.py [--models yolov8n yolo11n yolo26n] [--weights a.pt b.safetensors]
                                 [--imgsz 640] [--batch-sizes 1 8] [--runs 20] [--warmup 3]
                                 [--engine auto eager jit] [--reference-json results/reference_predict.json]
                                 [--threads N]

Models are random-init networks built from the shipped specs (speed does not depend on the weights' values,
except postprocessing, which depends on how many boxes pass the confidence threshold), or the given weights files.
The input is one synthetic 1080x810 (w x h) image, letterboxed to 640x480 (rectangular batches, as in predict).
Each row is the median over ``--runs`` calls of ``Predictor.predict`` on a batch of identical images: the stage
times are the predictor's own per-image means, end-to-end is the wall time of the call divided by the batch.
YOLO26 is measured with NMS (the default head) and end-to-end (``nms=False``).

``--engine`` takes one or more engines (``auto``, ``eager``, ``channels_last``, ``jit``, ``onnxruntime``). With several,
the timed calls of the engines alternate (A, B, A, B, ...) in one process, so load from other processes on a shared
machine hits all of them alike; compare the medians (and ``e2e_min``, the best call). The ``jit`` engine traces
during the warm-up calls (the one-time trace cost is not in the table).

``--reference-json`` (default benchmarks/results/reference_predict.json, written by benchmarks/reference_predict.py
in a separate environment) adds the reference's end-to-end median for the same model / head / batch and the
speed-up ``ref e2e / e2e``; rows are matched by model name (``yolov8n-random`` matches ``yolov8n``), mode, imgsz
and batch.

Prints a table and writes benchmarks/results/predict.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from reference_predict import print_table, synthetic_image, write_results  # shared with the reference side (no yolokit)

from yolokit.backends import ALL_ENGINES, create_backend
from yolokit.config import PredictConfig
from yolokit.predict.predictor import Predictor

STAGES = ("preprocess", "inference", "postprocess")

def build_models(args: argparse.Namespace) -> list[tuple[str, torch.nn.Module]]:
    if args.weights:
        from yolokit.weights import load_weights

        return [(Path(path).stem, load_weights(path)) for path in args.weights]
    from yolokit.models.builder import build_model
    from yolokit.models.spec import load_spec

    torch.manual_seed(0)
    return [(name, build_model(load_spec(f"{name}.yaml"))) for name in args.models]


def measure(backends: dict[str, Any], image: np.ndarray, batch: int, nms: bool,
            args: argparse.Namespace) -> dict[str, dict]:
    """One row per engine; the engines' timed calls alternate so shared-machine noise hits them alike."""
    config = PredictConfig(imgsz=args.imgsz, batch=batch, nms=nms, verbose=False)
    predictors = {engine: Predictor(backend, config) for engine, backend in backends.items()}
    images = [image] * batch
    for predictor in predictors.values():
        for _ in range(args.warmup):
            predictor.predict(images)
    walls: dict[str, list[float]] = {engine: [] for engine in backends}
    stages: dict[str, list[dict]] = {engine: [] for engine in backends}
    boxes: dict[str, int] = {}
    for _ in range(args.runs):
        for engine, predictor in predictors.items():
            start = time.perf_counter()
            results = predictor.predict(images)
            walls[engine].append((time.perf_counter() - start) * 1000 / batch)
            stages[engine].append(dict(predictor.speed))
            boxes[engine] = len(results[0])
    rows = {}
    for engine in backends:
        row = {stage: statistics.median(s[stage] for s in stages[engine]) for stage in STAGES}
        e2e = statistics.median(walls[engine])
        row.update(e2e=e2e, e2e_min=min(walls[engine]), images_per_s=1000 / e2e, boxes=boxes[engine])
        rows[engine] = row
    return rows


def load_reference(path: str) -> dict[tuple, dict]:
    """Reference rows keyed by (model base name, mode, imgsz, batch), or {} when the file is missing."""
    file = Path(path)
    if not path or not file.is_file():
        return {}
    rows = json.loads(file.read_text()).get("rows", [])
    return {(r["model"].split("-")[0], r.get("mode", "nms"), int(r.get("imgsz", 640)), int(r["batch"])): r
            for r in rows}


def attach_reference(row: dict, reference: dict[tuple, dict], imgsz: int) -> None:
    match = reference.get((row["model"].split("-")[0], row["mode"], imgsz, row["batch"]))
    if match:
        row.update(ref_e2e=match["e2e"], ref_inference=match["inference"], speedup=match["e2e"] / row["e2e"])


COLUMNS = [
    ("model", 16, "", lambda r: r["model"]), ("mode", 5, "", lambda r: r.get("mode", "nms")),
    ("engine", 13, "", lambda r: r.get("engine", "-")), ("batch", 5, "d", lambda r: r["batch"]),
    ("pre ms", 7, ".1f", lambda r: r["preprocess"]), ("infer ms", 9, ".1f", lambda r: r["inference"]),
    ("post ms", 8, ".1f", lambda r: r["postprocess"]), ("e2e ms", 8, ".1f", lambda r: r["e2e"]),
    ("min ms", 8, ".1f", lambda r: r.get("e2e_min", r["e2e"])), ("img/s", 7, ".2f", lambda r: 1000 / r["e2e"]),
    ("ref e2e", 8, ".1f", lambda r: r.get("ref_e2e")), ("x ref", 6, ".2f", lambda r: r.get("speedup")),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["yolov8n", "yolo11n", "yolo26n"])
    parser.add_argument("--weights", nargs="*", default=[], help="weights files to time instead of random models")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--engine", nargs="+", default=["auto"], choices=ALL_ENGINES,
                        help="engine(s) as in create_backend; several are timed alternately in one process")
    parser.add_argument("--reference-json", default=str(Path(__file__).parent / "results" / "reference_predict.json"),
                        help="reference timings to compare with (skipped when the file does not exist)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for the whole process (torch and ONNX Runtime; default: one per physical "
                             "core); the reference defaults to 1 here")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "predict.json"))
    args = parser.parse_args()
    if args.threads:  # this script owns its process: pre/post-processing runs with the same count
        torch.set_num_threads(args.threads)

    image = synthetic_image()
    reference = load_reference(args.reference_json)
    rows = []
    for name, model in build_models(args):
        backends = {engine: create_backend(model, engine=engine, num_threads=args.threads) for engine in args.engine}
        modes = [("nms", True), ("e2e", False)] if model.end2end else [("nms", True)]
        for mode, nms in modes:
            for batch in args.batch_sizes:
                for engine, row in measure(backends, image, batch, nms, args).items():
                    row.update(model=name, mode=mode, batch=batch, engine=engine,
                               engine_used=backends[engine].engine)
                    attach_reference(row, reference, args.imgsz)
                    rows.append(row)
                    print(f"  {name} {mode} batch {batch} {engine}: {row['e2e']:.1f} ms/img", flush=True)
    print_table(rows, f"yolokit predict, imgsz {args.imgsz}, 1080x810 input, torch {torch.__version__}, "
                      f"{torch.get_num_threads()} threads, median of {args.runs}"
                      + (f"; reference: {args.reference_json}" if reference else ""), COLUMNS)
    meta = {"processor": platform.processor(), "imgsz": args.imgsz, "engines": args.engine, "input_hw": [810, 1080],
            "reference_json": args.reference_json if reference else None}
    write_results(args.out, meta, rows, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
