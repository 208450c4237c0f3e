"""Warm predict latency with a CPU hog running: does yolokit degrade no worse than the reference implementation?

    python benchmarks/under_load.py [--reference-python /root/refenv/bin/python] [--weights W.pt] [--image bus.jpg]
        [--imgsz 640] [--pairs 5] [--runs 10] [--hogs 1] [--max-seconds 600] [--variant NAME:ENV=VALUE ...]

Each side runs in a worker process of its own environment (yolokit in this one; the reference in
``--reference-python``), loaded and warmed up once, then asked for ``--runs`` timed predict calls at a time. The
worker script is written to a temporary folder at run time and imports one side only (the reference side imports
``ultralytics``; yolokit never does). Two phases: ``idle`` (nothing else started by this script) and ``loaded``
(``--hogs`` busy-loop processes, one per core they are meant to take, alive for the phase only and never longer than
``--max-seconds``). In each phase the sides alternate pair by pair (the order flips every pair) with a pause between
calls, so both meet the same drift of the machine. ``--variant threads1:OMP_NUM_THREADS=1`` adds a yolokit worker
with that environment (e.g. to compare thread counts).

Prints, per phase and side, the median and 10th/90th percentiles of the per-call end-to-end milliseconds and the
loaded / idle ratio of the medians, and writes benchmarks/results/under_load.json. The load average before the run
is printed too: on a machine already busy with other work the figures say little (the script warns).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WEIGHTS = Path("/work/shared/fixtures/reference-full/yolo26n-random.pt")
DEFAULT_IMAGE = Path("/work/shared/fixtures/yolov5/bus.jpg")
PAUSE_S = 0.05  # between calls: longer than any thread pool's spin-wait

WORKER = r'''
import json, sys, time
side, weights, image, imgsz = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
import cv2
frame = cv2.imread(image)
if side == "yolokit":
    from yolokit import YOLO
    model = YOLO(weights)
    def predict():
        return len(model.predict(frame, imgsz=imgsz, conf=0.25, verbose=False)[0].boxes)
else:
    from ultralytics import YOLO
    model = YOLO(weights)
    def predict():
        return len(model.predict(frame, imgsz=imgsz, conf=0.25, verbose=False)[0].boxes)
for _ in range(3):
    boxes = predict()
print(json.dumps({"ready": True, "boxes": boxes}), flush=True)
for line in sys.stdin:
    runs = json.loads(line)["runs"]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predict()
        times.append((time.perf_counter() - start) * 1000)
        time.sleep(%PAUSE%)
    print(json.dumps({"ms": times}), flush=True)
'''


class Worker:
    """One side in its own process: a request line ``{"runs": N}`` in, ``{"ms": [...]}`` out."""

    def __init__(self, name: str, python: str, script: Path, args: argparse.Namespace, env: dict[str, str]) -> None:
        self.name = name
        command = [python, str(script), "yolokit" if name.startswith("yolokit") else "reference", str(args.weights),
                   str(args.image), str(args.imgsz)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env={**os.environ, **env}, cwd=tempfile.gettempdir())
        self.info = self._reply()

    def _reply(self) -> dict[str, Any]:
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"error: the {self.name} worker exited (code {self.process.wait()})")
        return json.loads(line)

    def run(self, runs: int) -> list[float]:
        self.process.stdin.write(json.dumps({"runs": runs}) + "\n")
        self.process.stdin.flush()
        return self._reply()["ms"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def start_hogs(count: int, seconds: float) -> list[subprocess.Popen]:
    """``count`` busy-loop processes that end by themselves after ``seconds``."""
    code = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count)]


def stop_hogs(hogs: list[subprocess.Popen]) -> None:
    for hog in hogs:
        hog.kill()
        hog.wait()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def measure_phase(workers: list[Worker], args: argparse.Namespace, hogs: int) -> dict[str, list[float]]:
    """Alternating pairs (the order flips every pair) with ``hogs`` busy processes alive for the phase."""
    running = start_hogs(hogs, args.max_seconds) if hogs else []
    times: dict[str, list[float]] = {w.name: [] for w in workers}
    try:
        time.sleep(1.0 if hogs else 0.0)  # let the hogs take their cores
        for pair in range(args.pairs):
            for worker in workers if pair % 2 == 0 else workers[::-1]:
                times[worker.name] += worker.run(args.runs)
                time.sleep(PAUSE_S)
    finally:
        stop_hogs(running)
    return times


def summarise(phases: dict[str, dict[str, list[float]]]) -> list[dict[str, Any]]:
    rows = []
    for name in phases["idle"]:
        idle, loaded = phases["idle"][name], phases["loaded"][name]
        row = {"side": name}
        for phase, values in (("idle", idle), ("loaded", loaded)):
            row.update({f"{phase}_median_ms": round(statistics.median(values), 2),
                        f"{phase}_p10_ms": round(percentile(values, 0.1), 2),
                        f"{phase}_p90_ms": round(percentile(values, 0.9), 2)})
        row["loaded_over_idle"] = round(row["loaded_median_ms"] / row["idle_median_ms"], 3)
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'side':<22}{'idle ms (p10-p90)':>24}{'loaded ms (p10-p90)':>26}{'loaded/idle':>13}")
    for r in rows:
        idle = f"{r['idle_median_ms']:.1f} ({r['idle_p10_ms']:.0f}-{r['idle_p90_ms']:.0f})"
        loaded = f"{r['loaded_median_ms']:.1f} ({r['loaded_p10_ms']:.0f}-{r['loaded_p90_ms']:.0f})"
        print(f"{r['side']:<22}{idle:>24}{loaded:>26}{r['loaded_over_idle']:>13.2f}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference-python", default="/root/refenv/bin/python")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10, help="timed calls per side per pair")
    parser.add_argument("--hogs", type=int, default=1, help="busy processes in the loaded phase")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="a hog never lives longer than this")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:ENV=VALUE[,ENV=VALUE]",
                        help="an extra yolokit worker with this environment")
    parser.add_argument("--no-reference", action="store_true", help="yolokit workers only")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "under_load.json")
    return parser.parse_args(argv)


def variants(args: argparse.Namespace) -> list[tuple[str, str, dict[str, str]]]:
    """(name, python, extra environment) of every worker."""
    sides = [("yolokit", sys.executable, {})]
    for spec in args.variant:
        name, _, assignments = spec.partition(":")
        env = dict(item.split("=", 1) for item in assignments.split(",") if "=" in item)
        sides.append((f"yolokit-{name}", sys.executable, env))
    if not args.no_reference:
        sides.append(("reference", args.reference_python, {}))
    return sides


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = os.getloadavg()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    print(f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {cores} CPUs")
    if load[0] > 0.5 * cores:
        print("warning: the machine is already busy; the idle phase is not idle and the figures say little")
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "predict_worker.py"
        script.write_text(WORKER.replace("%PAUSE%", str(PAUSE_S)))
        workers = [Worker(name, python, script, args, env) for name, python, env in variants(args)]
        try:
            phases = {"idle": measure_phase(workers, args, 0), "loaded": measure_phase(workers, args, args.hogs)}
        finally:
            for worker in workers:
                worker.close()
    rows = summarise(phases)
    print_table(rows)
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "load_before": load, "cpus": cores,
              "boxes": {w.name: w.info.get("boxes") for w in workers}, "rows": rows, "raw_ms": phases}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
