"""The worker of ``benchmarks/train.py``: one timed training run of one side, in that side's own environment.

    /path/to/env/bin/python benchmarks/train_worker.py --side yolokit|reference --model yolo26n --data data.yaml \\
        --imgsz 320 --batch 16 --epochs 2 --workers -1 --threads 0 --seed 0 --close-mosaic 0 --project DIR

Prints one line, ``TRAIN_BENCH_RESULT {json}``: the side's versions and one row per epoch (seconds from the epoch's
start to its last optimizer step, images, steps, images/s, torch threads, loader workers, peak RSS of this process
and peak PSS of its process tree, sampled every 0.2 s). Standard library only at import, so it runs in the
reference's environment too; the reference side only calls the reference package's public API
(``YOLO(spec).train(...)`` and its callbacks) and never imports yolokit. What the figures mean: ``train.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

RESULT_PREFIX = "TRAIN_BENCH_RESULT "
SAMPLE_INTERVAL_S = 0.2


def _proc_kb(path: str, key: str) -> int:
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(p) for p in handle.read().split()]
    except OSError:
        return found
    return found + [g for c in found for g in _children(c)]


class MemorySampler(threading.Thread):
    """Peak RSS of this process and peak PSS of its process tree (MB) since the last :meth:`reset`."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.rss_mb = self.pss_mb = 0.0
        self._lock = threading.Lock()

    def sample(self) -> None:
        pid = os.getpid()
        rss = _proc_kb(f"/proc/{pid}/status", "VmRSS:") / 1024
        pss = sum(_proc_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in [pid, *_children(pid)]) / 1024
        with self._lock:
            self.rss_mb, self.pss_mb = max(self.rss_mb, rss), max(self.pss_mb, pss)

    def reset(self) -> None:
        with self._lock:
            self.rss_mb = self.pss_mb = 0.0
        self.sample()

    def run(self) -> None:
        while True:
            time.sleep(SAMPLE_INTERVAL_S)
            self.sample()


class EpochClock:
    """Times epochs from ``begin`` to the last ``step``; collects one row per epoch."""

    def __init__(self) -> None:
        self.sampler = MemorySampler()
        self.sampler.start()
        self.rows: list[dict[str, Any]] = []
        self.start = self.last = 0.0
        self.steps = 0

    def begin(self) -> None:
        self.sampler.reset()
        self.start = self.last = time.perf_counter()
        self.steps = 0

    def step(self) -> None:
        self.last = time.perf_counter()
        self.steps += 1

    def end(self, images: int, threads: int, workers: int) -> None:
        self.sampler.sample()
        seconds = self.last - self.start
        self.rows.append({"epoch": len(self.rows) + 1, "seconds": seconds, "images": images, "steps": self.steps,
                          "images_per_s": images / seconds if seconds > 0 else None, "threads": threads,
                          "workers": workers,
                          "rss_peak_mb": self.sampler.rss_mb, "pss_tree_peak_mb": self.sampler.pss_mb})


def _worker_yolokit(args: argparse.Namespace, clock: EpochClock) -> dict[str, Any]:
    """yolokit's trainer with the contract's hooks (``Trainer(model, config)`` + a timing ``HookBase``)."""
    import torch

    import yolokit
    from yolokit.config import make_config
    from yolokit.data.dataset import load_data_config
    from yolokit.models.builder import build_model
    from yolokit.train.config import TrainConfig
    from yolokit.train.hooks import HookBase
    from yolokit.train.trainer import Trainer

    class EpochTimer(HookBase):
        def before_epoch(self) -> None:
            clock.begin()

        def after_step(self) -> None:
            clock.step()

        def after_epoch(self) -> None:
            clock.end(len(self.trainer.train_dataset), torch.get_num_threads(), self.trainer.workers)

    overrides = {"data": args.data, "epochs": args.epochs, "imgsz": args.imgsz, "batch": args.batch,
                 **({"workers": args.workers} if args.workers >= 0 else {}), "device": "cpu", "seed": args.seed,
                 **({"threads": args.threads} if args.threads else {}), "val": False, "plots": False,
                 "close_mosaic": args.close_mosaic, "project": args.project, "name": "yolokit", "exist_ok": True,
                 "verbose": False}
    config = make_config(TrainConfig, overrides)
    torch.manual_seed(args.seed)
    model = build_model(_spec(args.model), num_classes=len(load_data_config(args.data).names))
    trainer = Trainer(model, config, run_dir=Path(args.project) / "yolokit")
    trainer.register_hooks([EpochTimer()])
    trainer.train()
    return {"version": yolokit.__version__, "torch": torch.__version__}


def _spec(model: str) -> str:
    return model if model.endswith((".yaml", ".yml")) else f"{model}.yaml"


def reference_environment(folder: Path) -> None:
    """Before the reference package is imported: offline (no update, font or download checks over the network),
    quiet, no auto-install, its settings in ``folder`` (unless the caller's environment sets these already)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(folder / "reference-config"))


def _worker_reference(args: argparse.Namespace, clock: EpochClock) -> dict[str, Any]:
    """The reference package's own trainer through its public API, timed with its callbacks."""
    reference_environment(Path(args.project))
    import torch
    import ultralytics
    from ultralytics import YOLO

    if args.threads:
        torch.set_num_threads(args.threads)
    model = YOLO(_spec(args.model))
    model.add_callback("on_train_epoch_start", lambda trainer: clock.begin())
    model.add_callback("on_train_batch_end", lambda trainer: clock.step())
    model.add_callback("on_train_epoch_end", lambda trainer: clock.end(len(trainer.train_loader.dataset),
                                                                       torch.get_num_threads(),
                                                                       trainer.train_loader.num_workers))
    torch.manual_seed(args.seed)
    workers = {"workers": args.workers} if args.workers >= 0 else {}
    model.train(data=args.data, epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, **workers, device="cpu",
                seed=args.seed, val=False, plots=False, close_mosaic=args.close_mosaic,
                project=args.project, name="reference", exist_ok=True, verbose=False, amp=False)
    return {"version": ultralytics.__version__, "torch": torch.__version__}


def worker_main(args: argparse.Namespace) -> int:
    clock = EpochClock()
    run = _worker_yolokit if args.side == "yolokit" else _worker_reference
    info = run(args, clock)
    info.update(side=args.side, epochs=clock.rows)
    try:
        import resource

        info["ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except ImportError:
        info["ru_maxrss_mb"] = None
    sys.stdout.flush()
    print(RESULT_PREFIX + json.dumps(info), flush=True)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", choices=("yolokit", "reference"), required=True)
    parser.add_argument("--model", required=True, help="spec name or YAML path")
    parser.add_argument("--data", required=True, help="dataset YAML")
    parser.add_argument("--imgsz", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--workers", type=int, default=-1, help="loader workers (-1: the side's own default)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the side's own default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--close-mosaic", type=int, default=0)
    parser.add_argument("--project", required=True, help="run directory")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(worker_main(parse_args()))
