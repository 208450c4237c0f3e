"""Measure synthetic dataset generation (images/s) and label scanning (first scan vs cached scan).

    python benchmarks/synth.py [--images 400] [--imgsz 320 640] [--workers 1 0] [--runs 3]

Each row generates ``--images`` train images (+ a tenth of that for val) into a fresh temporary folder with
``make_synthetic_dataset`` (``workers=0`` means the default: up to 4 threads, one per core) and reports the best
and median wall-clock images/s over ``--runs`` runs, and images per CPU-second (process time, all threads). The
scan rows time ``DetectionDataset`` on the generated train split without and then with the label cache. The
machine is often shared: the 1-minute load average at the start is recorded with the results.
Prints a table and writes benchmarks/results/synth.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from yolokit.data.dataset import DetectionDataset, load_data_config
from yolokit.data.synth import make_synthetic_dataset


def time_generation(images: int, imgsz: int, workers: int, runs: int) -> dict:
    wall, cpu = [], []
    total = images + images // 10
    for run in range(runs):
        with tempfile.TemporaryDirectory(prefix="yolokit-bench-synth-") as tmp:
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            make_synthetic_dataset(Path(tmp) / "ds", n_train=images, n_val=images // 10, imgsz=imgsz, seed=run,
                                   workers=workers or None)
            wall.append(time.perf_counter() - start_wall)
            cpu.append(time.process_time() - start_cpu)
    return {"imgsz": imgsz, "workers": workers or "default", "images": total,
            "best_img_per_s": round(total / min(wall), 1),
            "median_img_per_s": round(total / statistics.median(wall), 1),
            "img_per_cpu_s": round(total / statistics.median(cpu), 1)}


def time_scan(images: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="yolokit-bench-scan-") as tmp:
        data = load_data_config(make_synthetic_dataset(Path(tmp) / "ds", n_train=images, n_val=1, imgsz=320))
        start = time.perf_counter()
        DetectionDataset(data, "train", progress=False)
        first = time.perf_counter() - start
        start = time.perf_counter()
        cached = DetectionDataset(data, "train", progress=False)
        second = time.perf_counter() - start
        assert cached.report.from_cache
    return {"images": images, "first_scan_img_per_s": round(images / first, 1),
            "cached_scan_img_per_s": round(images / second, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--imgsz", type=int, nargs="+", default=[320, 640])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "synth.json"))
    args = parser.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows = [time_generation(args.images, imgsz, workers, args.runs) for imgsz in args.imgsz for workers in args.workers]
    print(f"{'imgsz':>5}  {'workers':>7}  {'images':>6}  {'best img/s':>10}  {'median img/s':>12}  {'img/CPU-s':>9}")
    for r in rows:
        print(f"{r['imgsz']:>5}  {r['workers']!s:>7}  {r['images']:>6}  {r['best_img_per_s']:>10.1f}  "
              f"{r['median_img_per_s']:>12.1f}  {r['img_per_cpu_s']:>9.1f}")
    scan = time_scan(args.images)
    print(f"label scan of {scan['images']} images: first {scan['first_scan_img_per_s']:.0f} img/s, "
          f"cached {scan['cached_scan_img_per_s']:.0f} img/s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"python": sys.version.split()[0], "machine": platform.machine(), "cpus": os.cpu_count(),
              "load_average_1min_at_start": load, "runs": args.runs, "generation": rows, "scan": scan}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
