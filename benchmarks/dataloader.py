"""Measure the training data loader: images/s of full epochs (mosaic + affine + HSV + flip, collated batches).

    python benchmarks/dataloader.py [--images 512] [--imgsz 320] [--batch 16] [--workers 0 2] [--epochs 3]
                                    [--warmup 1] [--mosaic on off] [--cache-images off on] [--data data.yaml]

Builds ``--images`` synthetic train images of ``--imgsz`` px (or uses ``--data``), then for each combination of
workers / mosaic / RAM image cache iterates ``--warmup`` untimed and ``--epochs`` timed epochs of
``build_dataloader(TrainDataset(...), batch, workers, shuffle=True)`` (worker processes are started anew every
epoch, as in training). Reports the best and median epoch images/s, and the CPU time per image of the whole
process tree (main process + finished workers). The machine is often shared: the 1-minute load average at the start
is recorded with the results. Prints a table and writes benchmarks/results/dataloader.json.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from reference_predict import print_table, write_results  # shared table / JSON helpers (no yolokit imports)

from yolokit.data.dataset import load_data_config
from yolokit.data.loader import build_dataloader
from yolokit.data.synth import make_synthetic_dataset
from yolokit.data.train_dataset import TrainDataset


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_loader(data, args: argparse.Namespace, workers: int, mosaic: bool, cache_images: bool) -> dict:
    start = time.perf_counter()
    dataset = TrainDataset(data, "train", args.imgsz, True, None, batch_size=args.batch, cache_images=cache_images,
                           progress=False)
    setup = time.perf_counter() - start
    dataset.set_mosaic(mosaic)
    loader = build_dataloader(dataset, args.batch, workers, shuffle=True, seed=0)
    rates, cpu = [], []
    for epoch in range(args.warmup + args.epochs):
        loader.set_epoch(epoch)
        start_wall, start_cpu, count = time.perf_counter(), cpu_seconds(), 0
        for batch in loader:
            count += batch["img"].shape[0]
        wall, used = time.perf_counter() - start_wall, cpu_seconds() - start_cpu
        if epoch >= args.warmup:
            rates.append(count / wall)
            cpu.append(1000 * used / count)
    return {"imgsz": args.imgsz, "batch": args.batch, "workers": workers, "mosaic": mosaic,
            "cache_images": cache_images, "images": len(dataset), "setup_s": round(setup, 2),
            "best_img_per_s": round(max(rates), 1), "median_img_per_s": round(statistics.median(rates), 1),
            "img_per_s_per_process": round(statistics.median(rates) / max(workers, 1), 1),
            "cpu_ms_per_img": round(statistics.median(cpu), 2)}


COLUMNS = [
    ("imgsz", 5, "d", lambda r: r["imgsz"]), ("batch", 5, "d", lambda r: r["batch"]),
    ("workers", 7, "d", lambda r: r["workers"]), ("mosaic", 6, "", lambda r: "on" if r["mosaic"] else "off"),
    ("cache", 5, "", lambda r: "ram" if r["cache_images"] else "-"),
    ("best img/s", 10, ".1f", lambda r: r["best_img_per_s"]),
    ("median img/s", 12, ".1f", lambda r: r["median_img_per_s"]),
    ("img/s/proc", 10, ".1f", lambda r: r["img_per_s_per_process"]),
    ("CPU ms/img", 10, ".2f", lambda r: r["cpu_ms_per_img"]), ("setup s", 7, ".2f", lambda r: r["setup_s"]),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per row")
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs per row")
    parser.add_argument("--mosaic", nargs="+", choices=["on", "off"], default=["on"])
    parser.add_argument("--cache-images", nargs="+", choices=["off", "on"], default=["off", "on"])
    parser.add_argument("--data", default="", help="a dataset YAML instead of the synthetic set")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "dataloader.json"))
    args = parser.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory(prefix="yolokit-bench-loader-") as tmp:
        yaml_path = args.data or make_synthetic_dataset(Path(tmp) / "ds", n_train=args.images, n_val=1,
                                                        imgsz=args.imgsz)
        data = load_data_config(yaml_path)
        rows = [time_loader(data, args, workers, mosaic == "on", cache == "on")
                for cache in args.cache_images for mosaic in args.mosaic for workers in args.workers]
    print_table(rows, f"Training data loader, {rows[0]['images']} images (load average {load})", COLUMNS)
    write_results(args.out, {"load_average_1min_at_start": load, "data": args.data or "synthetic",
                             "epochs": args.epochs}, rows, argparse.Namespace(runs=args.epochs, warmup=args.warmup))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
