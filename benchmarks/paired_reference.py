"""Paired speed comparison with the reference implementation: its calls and yolokit's alternate, one by one.

    python benchmarks/paired_reference.py --reference-python /tmp/refvenv/bin/python \\
        --weights yolov8n.pt yolo11n.pt yolo26n.pt [--engine auto] [--batch-sizes 1 8] [--rounds 30] \\
        [--warmup 3] [--threads N] [--reference-threads 0] [--imgsz 640]

Why paired: on a shared or virtual machine the speed of the CPU drifts by +-30% over minutes, so two tables
measured a few minutes apart can disagree on a ratio by more than the effect being measured. Here the reference
runs in its own environment as a worker process (``reference_predict.py --serve``, which never imports yolokit)
and yolokit runs in this process; each round times one call of each, in alternating order, with a pause between
calls so that no thread pool is still spinning when the other side starts. The speed-up of a round is
``reference e2e / yolokit e2e`` of that round; the table gives the medians of both sides and of the per-round
speed-ups, with the 25th-75th percentile of the latter.

The input is the shared synthetic 1080x810 image; both sides predict the same list of ``batch`` copies with conf
0.25, iou 0.7, max_det 300. YOLO26 is compared with NMS (the default head) and end-to-end (``nms=False``).
Threads: each side at its own default unless ``--threads`` (yolokit) / ``--reference-threads`` (reference) say
otherwise; the table says which. Prints a table and writes benchmarks/results/paired_reference.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from reference_predict import STAGES, print_table, synthetic_image, write_results

from yolokit.backends import ALL_ENGINES, create_backend
from yolokit.config import PredictConfig
from yolokit.predict.predictor import Predictor
from yolokit.weights import load_weights

PAUSE_S = 0.05  # between calls: longer than the spin-wait of any thread pool involved


class ReferenceWorker:
    """``reference_predict.py --serve`` in the reference's environment: one request line in, one reply line out."""

    def __init__(self, python: str, weights: list[str], threads: int) -> None:
        script = Path(__file__).with_name("reference_predict.py")
        command = [python, str(script), "--serve", "--weights", *weights, "--threads", str(threads)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self._reply()

    def _reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"error: the reference worker exited (code {self.process.wait()}); run "
                             "reference_predict.py with that Python alone to see why")
        return json.loads(line)

    def run(self, model: str, mode: str, batch: int, imgsz: int) -> dict:
        request = {"model": model, "mode": mode, "batch": batch, "imgsz": imgsz}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._reply()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def run_yolokit(predictor: Predictor, images: list[np.ndarray]) -> dict:
    start = time.perf_counter()
    results = predictor.predict(images)
    reply = {"e2e": (time.perf_counter() - start) * 1000 / len(images), "boxes": len(results[0])}
    reply.update({stage: predictor.speed[stage] for stage in STAGES})
    return reply


def compare(worker: ReferenceWorker, predictor: Predictor, name: str, mode: str, batch: int,
            args: argparse.Namespace) -> dict[str, Any]:
    """``--warmup`` untimed calls each, then ``--rounds`` rounds of one call each in alternating order."""
    images = [synthetic_image()] * batch
    for _ in range(args.warmup):
        worker.run(name, mode, batch, args.imgsz)
        run_yolokit(predictor, images)
    ours: list[dict] = []
    theirs: list[dict] = []
    for index in range(args.rounds):
        calls = [lambda: theirs.append(worker.run(name, mode, batch, args.imgsz)),
                 lambda: ours.append(run_yolokit(predictor, images))]
        for call in calls if index % 2 == 0 else calls[::-1]:
            time.sleep(PAUSE_S)
            call()
    ratios = [t["e2e"] / o["e2e"] for t, o in zip(theirs, ours, strict=True)]
    q25, _, q75 = statistics.quantiles(ratios, n=4)
    row: dict[str, Any] = {"model": name, "mode": mode, "batch": batch,
                           "speedup": statistics.median(ratios), "speedup_q25": q25, "speedup_q75": q75,
                           "boxes": ours[-1]["boxes"], "ref_boxes": theirs[-1]["boxes"],
                           "ref_threads": theirs[-1]["threads"], "speedups": ratios}
    for side, replies in (("", ours), ("ref_", theirs)):
        for key in ("e2e", *STAGES):
            row[side + key] = statistics.median(r[key] for r in replies)
    return row


COLUMNS = [
    ("model", 16, "", lambda r: r["model"]), ("mode", 5, "", lambda r: r["mode"]),
    ("batch", 5, "d", lambda r: r["batch"]), ("ref thr", 7, "d", lambda r: r["ref_threads"]),
    ("ref pre", 7, ".1f", lambda r: r["ref_preprocess"]), ("ref inf", 7, ".1f", lambda r: r["ref_inference"]),
    ("ref e2e", 8, ".1f", lambda r: r["ref_e2e"]), ("pre", 6, ".1f", lambda r: r["preprocess"]),
    ("inf", 6, ".1f", lambda r: r["inference"]), ("post", 5, ".1f", lambda r: r["postprocess"]),
    ("e2e ms", 7, ".1f", lambda r: r["e2e"]), ("x ref", 6, ".2f", lambda r: r["speedup"]),
    ("x ref q25-q75", 14, "", lambda r: f"{r['speedup_q25']:.2f}-{r['speedup_q75']:.2f}"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-python", required=True, help="Python of the environment with the reference")
    parser.add_argument("--weights", nargs="+", required=True, help="reference .pt files (both sides load them)")
    parser.add_argument("--engine", default="auto", choices=ALL_ENGINES,
                        help="yolokit engine (default: auto, what predict uses)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1])
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="yolokit threads (default: one per physical core)")
    parser.add_argument("--reference-threads", type=int, default=0, help="0: the reference's own default")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "paired_reference.json"))
    args = parser.parse_args()
    if args.threads:  # this script owns its process: pre/post-processing runs with the same count
        import torch

        torch.set_num_threads(args.threads)
    args.runs = args.rounds  # for write_results

    missing = [w for w in args.weights if not Path(w).is_file()]
    if missing:
        print(f"error: weights file(s) not found: {missing}; pass local .pt files (nothing is downloaded)")
        return 2
    worker = ReferenceWorker(args.reference_python, args.weights, args.reference_threads)
    rows = []
    try:
        for path in args.weights:
            name = Path(path).stem
            model = load_weights(path)
            backend = create_backend(model, engine=args.engine, num_threads=args.threads)
            modes = [("nms", True), ("e2e", False)] if model.end2end else [("nms", True)]
            for mode, nms in modes:
                for batch in args.batch_sizes:
                    config = PredictConfig(imgsz=args.imgsz, batch=batch, nms=nms, verbose=False)
                    row = compare(worker, Predictor(backend, config), name, mode, batch, args)
                    row.update(engine=args.engine, engine_used=backend.engine)
                    rows.append(row)
                    print(f"  {name} {mode} batch {batch}: {row['speedup']:.2f}x", flush=True)
    finally:
        worker.close()
    print_table(rows, f"paired: reference {worker.info['reference_version']} (torch {worker.info['torch']}) vs "
                      f"yolokit {args.engine} ({backend.engine}), imgsz {args.imgsz}, 1080x810 input, "
                      f"median of {args.rounds} rounds", COLUMNS)
    write_results(args.out, {"engine": args.engine, "imgsz": args.imgsz, "reference": worker.info,
                             "yolokit_threads": args.threads, "reference_threads": args.reference_threads}, rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
