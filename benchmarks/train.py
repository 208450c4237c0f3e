"""Training speed and memory, yolokit vs the reference implementation, in paired runs on the same synthetic data.

    .venv/bin/python benchmarks/train.py --reference-python /root/refenv/bin/python \\
        [--models yolov8n yolo11n yolo26n] [--imgsz 320 640] [--images 128] [--batch 16] [--epochs 2] \\
        [--rounds 3] [--workers -1] [--threads 0] [--reference-threads 0] [--hogs 0] \\
        [--out benchmarks/results/train.json]
    .venv/bin/python benchmarks/train.py --quick          # smoke run: yolov8n, 64 px, 8 images, yolokit only

What is measured: images/s of each training epoch (from the epoch's start to the end of its last optimizer step:
data loading, forward, loss, backward, optimizer and EMA; not the validation, checkpoints or setup) and the peak
memory during the epoch, sampled every 0.2 s: ``rss`` of the training process, and ``pss`` summed over it and its
data-loader worker processes (proportional set size, so pages shared by the workers count once). Both sides train
a model built from the spec (random init, seed 0) on copies of one synthetic dataset (``yolokit.data.synth``,
``--images`` train images at the training size), with the same batch, image size, epochs, mosaic
(``close_mosaic=0``: mosaic in every timed epoch), ``optimizer=auto``, no validation between epochs and no plots.

Why paired: this machine's CPU speed drifts by +-30% over minutes, so only ratios of runs made back to back mean
anything. Each round trains one short run (``--epochs``) per side, one after the other in alternating order
(reference first in even rounds), each in a fresh process of its own environment (the reference never shares a
process with yolokit); the round's speed-up is ``yolokit images/s / reference images/s`` of the timed epochs, and
the table gives the median over rounds with its 25th-75th percentile. With ``--epochs`` > 1 the first epoch of a
run is a warm-up and not timed (first-call allocations, thread pools). Each side's loader behaves as it does in
use: both keep their loader workers alive across epochs; by default (``--workers -1``) each side picks its own
count (the reference: min(8, CPUs); yolokit on the CPU: the CPUs its torch threads leave free, so 0 on 2 cores with
2 threads), and the table states the counts used; ``--workers N`` gives both sides N.

Threads: each side at its own default unless ``--threads`` (yolokit's ``threads=``) / ``--reference-threads`` say
otherwise; on a 2-core machine the reference runs torch with 1 thread, yolokit with the physical cores free when
the run starts (``threads=None``: 2 on an idle machine, 1 when another process keeps a core busy). The table states
the count each side actually used.

Under load (``--hogs N``): every round also runs both sides with N busy-loop processes alive (the hog helpers of
``benchmarks/under_load.py``, started 1 s before the pair and stopped after it), so each row comes in two phases,
``hogs=0`` and ``hogs=N``, measured in the same rounds (the phase order flips every round), and the script prints
each side's loaded / idle ratio of the median images/s. The 1-minute load average before each run is recorded
(``load`` column: the median): other work on the machine is not stopped by the script.

Each run is a process of ``benchmarks/train_worker.py`` in its side's environment; the reference side only calls
the reference package's public API (``YOLO(spec).train(...)`` and its callbacks) and never imports yolokit.
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

HOG_MAX_S = 900.0  # a CPU hog never outlives this, even if the driver dies


def make_data(root: Path, images: int, imgsz: int, seed: int) -> Path:
    """One synthetic dataset per image size (reused across models and rounds); returns its data.yaml."""
    from yolokit.data.synth import make_synthetic_dataset

    return make_synthetic_dataset(root / f"synth-{imgsz}-{images}", n_train=images, n_val=max(4, images // 8),
                                  imgsz=imgsz, seed=seed)


def side_copy(data_yaml: Path, side: str) -> Path:
    """A copy of the dataset for one side (both write a label cache at labels/<split>.cache, in other formats)."""
    import shutil

    import yaml

    target = data_yaml.parent.with_name(f"{data_yaml.parent.name}-{side}")
    if not target.exists():
        shutil.copytree(data_yaml.parent, target)
    config = yaml.safe_load(data_yaml.read_text())
    config["path"] = str(target)
    config.pop("synth", None)
    (target / "data.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return target / "data.yaml"


def run_side(python: str, side: str, model: str, imgsz: int, data: Path, args: argparse.Namespace,
             work: Path) -> dict[str, Any]:
    from train_worker import RESULT_PREFIX

    threads = args.threads if side == "yolokit" else args.reference_threads
    command = [python, str(Path(__file__).with_name("train_worker.py").resolve()), "--side", side, "--model", model,
               "--data", str(data),
               "--imgsz", str(imgsz), "--batch", str(args.batch), "--epochs", str(args.epochs),
               "--workers", str(args.workers), "--threads", str(threads), "--seed", str(args.seed),
               "--close-mosaic", str(args.close_mosaic), "--project", str(work / side / f"{Path(model).stem}-{imgsz}")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, cwd=work)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout)[-1500:]
        raise SystemExit(f"error: the {side} worker failed (exit {done.returncode}) on {model} {imgsz}:\n{tail}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def timed(result: dict[str, Any]) -> dict[str, float]:
    """Images/s over the timed epochs (all but the first when there are several) and their peak memory."""
    if not result["epochs"]:
        raise SystemExit(f"error: the {result['side']} worker reported no epoch (its epoch hooks never ran)")
    epochs = result["epochs"][1:] if len(result["epochs"]) > 1 else result["epochs"]
    seconds = sum(e["seconds"] for e in epochs)
    return {"images_per_s": sum(e["images"] for e in epochs) / seconds, "threads": epochs[-1]["threads"],
            "workers": epochs[-1].get("workers"),
            "rss_peak_mb": max(e["rss_peak_mb"] for e in epochs),
            "pss_tree_peak_mb": max(e["pss_tree_peak_mb"] for e in epochs)}


def _quantiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def _pair(sides: list[str], hogs: int, run: Any) -> list[dict]:
    """``run(side)`` for each side in order, with ``hogs`` busy processes alive for the pair (under_load's)."""
    from under_load import start_hogs, stop_hogs

    running = start_hogs(hogs, HOG_MAX_S) if hogs else []
    try:
        if hogs:
            time.sleep(1.0)  # let the hogs take their cores
        return [run(side) for side in sides]
    finally:
        stop_hogs(running)


def compare(model: str, imgsz: int, args: argparse.Namespace, work: Path) -> tuple[list[dict], list[dict]]:
    """Paired rounds of ``model`` at ``imgsz`` -> (one row per phase: idle, and loaded with ``--hogs``, all runs)."""
    data = make_data(work, args.images, imgsz, args.seed)
    sides = ["reference", "yolokit"] if args.reference_python else ["yolokit"]
    pythons = {"reference": args.reference_python, "yolokit": sys.executable}
    copies = {side: side_copy(data, side) for side in sides}
    phases = [0, args.hogs] if args.hogs else [0]
    runs: list[dict] = []
    per_phase: dict[int, dict[str, list[dict]]] = {h: {side: [] for side in sides} for h in phases}
    loads: dict[int, list[float]] = {h: [] for h in phases}

    for round_index in range(args.rounds):
        for hogs in phases if round_index % 2 == 0 else phases[::-1]:
            def run(side: str, hogs: int = hogs, round_index: int = round_index) -> dict:
                load = os.getloadavg()[0]
                result = run_side(pythons[side], side, model, imgsz, copies[side], args, work)
                result.update(model=model, imgsz=imgsz, round=round_index, hogs=hogs, load1=load)
                per_phase[hogs][side].append(timed(result))
                loads[hogs].append(load)
                print(f"  round {round_index + 1}/{args.rounds} hogs={hogs} {side:<9} {model} {imgsz}: "
                      f"{per_phase[hogs][side][-1]['images_per_s']:.2f} img/s (load {load:.2f})", flush=True)
                return result

            runs += _pair(sides if round_index % 2 == 0 else sides[::-1], hogs, run)
    return [summarise(model, imgsz, per_phase[h], args, hogs=h, loads=loads[h]) for h in phases], runs


def summarise(model: str, imgsz: int, per_side: dict[str, list[dict]], args: argparse.Namespace, *, hogs: int = 0,
              loads: list[float] | None = None) -> dict:
    row: dict[str, Any] = {"model": model, "imgsz": imgsz, "batch": args.batch, "images": args.images,
                           "rounds": args.rounds, "epochs": args.epochs, "workers": args.workers, "hogs": hogs,
                           "load1": statistics.median(loads) if loads else None}
    for side, results in per_side.items():
        row[side] = {key: statistics.median(r[key] for r in results) for key in results[0]}
    if "reference" in per_side:
        ratios = [y["images_per_s"] / r["images_per_s"] for y, r in zip(per_side["yolokit"], per_side["reference"],
                                                                       strict=True)]
        row["speedup"], (row["speedup_q25"], row["speedup_q75"]) = statistics.median(ratios), _quantiles(ratios)
        row["speedups"] = ratios
    return row


def loaded_over_idle(rows: list[dict]) -> list[dict]:
    """Per model, size and hog count: each side's loaded / idle ratio of the median images/s."""
    idle = {(r["model"], r["imgsz"]): r for r in rows if not r.get("hogs")}
    out = []
    for row in rows:
        base = idle.get((row["model"], row["imgsz"]))
        if row.get("hogs") and base is not None:
            ratios = {side: row[side]["images_per_s"] / base[side]["images_per_s"] for side in ("reference", "yolokit")
                      if side in row and side in base}
            out.append({"model": row["model"], "imgsz": row["imgsz"], "hogs": row["hogs"], "ratios": ratios})
    return out


def _get(row: dict, side: str, key: str) -> Any:
    return row.get(side, {}).get(key)


COLUMNS = [
    ("model", 9, "", lambda r: r["model"]), ("imgsz", 5, "d", lambda r: r["imgsz"]),
    ("batch", 5, "d", lambda r: r["batch"]), ("rounds", 6, "d", lambda r: r["rounds"]),
    ("hogs", 4, "d", lambda r: r.get("hogs", 0)), ("load", 4, ".1f", lambda r: r.get("load1")),
    ("ref img/s", 9, ".2f", lambda r: _get(r, "reference", "images_per_s")),
    ("yk img/s", 8, ".2f", lambda r: _get(r, "yolokit", "images_per_s")),
    ("speed-up", 8, ".2f", lambda r: r.get("speedup")),
    ("q25-q75", 9, "", lambda r: f"{r['speedup_q25']:.2f}-{r['speedup_q75']:.2f}" if "speedup" in r else "-"),
    ("ref RSS", 7, ".0f", lambda r: _get(r, "reference", "rss_peak_mb")),
    ("yk RSS", 7, ".0f", lambda r: _get(r, "yolokit", "rss_peak_mb")),
    ("ref PSS*", 8, ".0f", lambda r: _get(r, "reference", "pss_tree_peak_mb")),
    ("yk PSS*", 7, ".0f", lambda r: _get(r, "yolokit", "pss_tree_peak_mb")),
    ("thr ref/yk", 10, "", lambda r: f"{_get(r, 'reference', 'threads') or '-'}/{_get(r, 'yolokit', 'threads')}"),
    ("wrk ref/yk", 10, "", lambda r: f"{_get(r, 'reference', 'workers') or 0:g}/"
                                     f"{_get(r, 'yolokit', 'workers') or 0:g}"),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference-python", default="", help="Python of the reference's environment ('' = none)")
    parser.add_argument("--models", nargs="+", default=None, help="spec names or YAML paths")
    parser.add_argument("--imgsz", nargs="+", type=int, default=None)
    parser.add_argument("--images", type=int, default=None, help="synthetic training images")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (> 1: the first is a warm-up)")
    parser.add_argument("--rounds", type=int, default=None, help="paired runs per model and size")
    parser.add_argument("--workers", type=int, default=-1, help="loader workers (both; -1: own default)")
    parser.add_argument("--threads", type=int, default=0, help="yolokit torch threads (0: its default)")
    parser.add_argument("--reference-threads", type=int, default=0, help="reference torch threads (0: its default)")
    parser.add_argument("--hogs", type=int, default=0, help="also measure with N busy processes (0: idle only)")
    parser.add_argument("--close-mosaic", type=int, default=0, help="both sides (0: mosaic in every epoch)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny epochs (yolov8n, 64 px, 8 images)")
    parser.add_argument("--work-dir", default="", help="datasets and runs (default: a temporary folder)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results") / "train.json"))
    args = parser.parse_args(argv)
    quick = {"models": ["yolov8n"], "imgsz": [64], "images": 8, "batch": 4, "epochs": 1, "rounds": 1}
    full = {"models": ["yolov8n", "yolo11n", "yolo26n"], "imgsz": [320, 640], "images": 128, "batch": 16,
            "epochs": 2, "rounds": 3}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import platform

    from reference_predict import print_table

    with tempfile.TemporaryDirectory(prefix="yolokit-train-bench-") as tmp:
        work = Path(args.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows, runs = [], []
        for model in args.models:
            for imgsz in args.imgsz:
                model_rows, model_runs = compare(model, imgsz, args, work)
                rows += model_rows
                runs += model_runs
    workers = args.workers if args.workers >= 0 else "each side's default"
    print_table(rows, f"Training images/s per epoch and peak memory (MB); {args.images} synthetic images, "
                      f"{args.epochs} epoch(s) per run, workers={workers}; *PSS of the process tree; load: 1-min "
                      "load average before the runs (median)", COLUMNS)
    degradation = loaded_over_idle(rows)
    for entry in degradation:
        print(f"loaded/idle images/s, {entry['model']} {entry['imgsz']} with {entry['hogs']} hog(s): " +
              ", ".join(f"{side} {ratio:.2f}" for side, ratio in entry["ratios"].items()))
    versions = {r["side"]: {"version": r["version"], "torch": r["torch"]} for r in runs}
    meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpu_count": os.cpu_count(),
            "machine": platform.machine(), "python": sys.version.split()[0], "versions": versions,
            "settings": vars(args)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows, "loaded_over_idle": degradation, "runs": runs},
                              indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
