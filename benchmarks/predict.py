"""Measure predict speed: preprocess / inference / postprocess / end-to-end ms per image and images/s.

    python benchmarks/predict.py [--models yolov8n yolo11n yolo26n] [--weights a.pt b.safetensors]
                                 [--imgsz 640] [--batch-sizes 1 8] [--runs 20] [--warmup 2]
                                 [--compare-reference /path/to/venv/bin/python]

Models are random-init networks built from the shipped specs (speed does not depend on the weights' values,
except postprocessing, which depends on how many boxes pass the confidence threshold), or the given weights files.
The input is one synthetic 1080x810 (w x h) image, letterboxed to 640x480 (rectangular batches, as in predict).
Each row is the median over ``--runs`` calls of ``Predictor.predict`` on a batch of identical images: the stage
times are the predictor's own per-image means, end-to-end is the wall time of the call divided by the batch.
YOLO26 is measured with NMS (the default head) and end-to-end (``nms=False``).

``--compare-reference`` times the reference implementation installed in a *separate* Python environment (never a
dependency of yolokit) on the same image and settings; skipped when that interpreter or package is missing.
Prints a table and writes benchmarks/results/predict.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from yolokit.config import PredictConfig
from yolokit.predict.backend import TorchBackend
from yolokit.predict.predictor import Predictor

STAGES = ("preprocess", "inference", "postprocess")

REFERENCE_PROBE = """
import json, statistics, sys, time
import numpy as np
from ultralytics import YOLO
image = np.load(sys.argv[1])
runs, imgsz = int(sys.argv[2]), int(sys.argv[3])
rows = []
for name in sys.argv[4:]:
    model = YOLO(name + ".yaml")  # random init from the spec: no download
    for batch in (1, 8):
        images = [image] * batch
        for _ in range(2):
            model.predict(images, imgsz=imgsz, verbose=False)
        walls, stages = [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            results = model.predict(images, imgsz=imgsz, verbose=False)
            walls.append((time.perf_counter() - t0) * 1000 / batch)
            stages.append(results[0].speed)
        row = {k: statistics.median(s[k] for s in stages) for k in ("preprocess", "inference", "postprocess")}
        row.update(model=name, batch=batch, e2e=statistics.median(walls))
        rows.append(row)
print(json.dumps(rows))
"""


def synthetic_image(seed: int = 0) -> np.ndarray:
    """A 810x1080 BGR image with smooth gradients and a few solid shapes (not pure noise)."""
    import cv2

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:810, 0:1080]
    image = np.stack([(x * 255 // 1080), (y * 255 // 810), ((x + y) * 255 // 1890)], -1).astype(np.uint8)
    for _ in range(12):
        x1, y1 = int(rng.integers(0, 900)), int(rng.integers(0, 650))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.rectangle(image, (x1, y1), (x1 + int(rng.integers(40, 180)), y1 + int(rng.integers(40, 160))), color, -1)
    return image


def build_backends(args: argparse.Namespace) -> list[tuple[str, TorchBackend]]:
    if args.weights:
        from yolokit.weights import load_weights

        return [(Path(path).stem, TorchBackend(load_weights(path))) for path in args.weights]
    from yolokit.models.builder import build_model
    from yolokit.models.spec import load_spec

    torch.manual_seed(0)
    return [(name, TorchBackend(build_model(load_spec(f"{name}.yaml")))) for name in args.models]


def measure(backend: TorchBackend, image: np.ndarray, batch: int, nms: bool, args: argparse.Namespace) -> dict:
    predictor = Predictor(backend, PredictConfig(imgsz=args.imgsz, batch=batch, nms=nms, verbose=False))
    images = [image] * batch
    for _ in range(args.warmup):
        predictor.predict(images)
    walls, stages, boxes = [], [], 0
    for _ in range(args.runs):
        start = time.perf_counter()
        results = predictor.predict(images)
        walls.append((time.perf_counter() - start) * 1000 / batch)
        stages.append(dict(predictor.speed))
        boxes = len(results[0])
    row = {stage: statistics.median(s[stage] for s in stages) for stage in STAGES}
    e2e = statistics.median(walls)
    row.update(e2e=e2e, images_per_s=1000 / e2e, boxes=boxes)
    return row


def reference_rows(python: str, image: np.ndarray, args: argparse.Namespace) -> list[dict] | None:
    if not python or not Path(python).exists():
        print(f"reference comparison skipped: no interpreter at {python!r}")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        image_path = Path(tmp) / "image.npy"
        np.save(image_path, image)
        names = list(args.models)
        done = subprocess.run([python, "-c", REFERENCE_PROBE, str(image_path), str(args.runs), str(args.imgsz), *names],
                              capture_output=True, text=True, cwd=tmp)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"reference comparison skipped: {last}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_table(rows: list[dict], title: str) -> None:
    print(f"\n{title}")
    header = (f"{'model':<12} {'mode':<8} {'batch':>5} {'pre ms':>8} {'infer ms':>9} {'post ms':>8} {'e2e ms':>8} "
              f"{'img/s':>7}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['model']:<12} {r.get('mode', 'nms'):<8} {r['batch']:>5} {r['preprocess']:>8.1f} "
              f"{r['inference']:>9.1f} {r['postprocess']:>8.1f} {r['e2e']:>8.1f} {1000 / r['e2e']:>7.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["yolov8n", "yolo11n", "yolo26n"])
    parser.add_argument("--weights", nargs="*", default=[], help="weights files to time instead of random models")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compare-reference", default="", metavar="PYTHON")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "predict.json"))
    args = parser.parse_args()

    image = synthetic_image()
    rows = []
    for name, backend in build_backends(args):
        modes = [("nms", True), ("e2e", False)] if backend.end2end else [("nms", True)]
        for mode, nms in modes:
            for batch in args.batch_sizes:
                row = measure(backend, image, batch, nms, args)
                row.update(model=name, mode=mode, batch=batch)
                rows.append(row)
                print(f"  {name} {mode} batch {batch}: {row['e2e']:.1f} ms/img", flush=True)
    print_table(rows, f"yolokit predict, imgsz {args.imgsz}, 1080x810 input, torch {torch.__version__}, "
                      f"{torch.get_num_threads()} threads, median of {args.runs}")
    reference = reference_rows(args.compare_reference, image, args) if args.compare_reference else None
    if reference:
        print_table(reference, "reference implementation (separate environment), same image and settings")
    meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "processor": platform.processor(), "python": sys.version.split()[0], "imgsz": args.imgsz,
            "runs": args.runs, "input_hw": [810, 1080]}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows, "reference": reference}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
