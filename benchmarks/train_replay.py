"""Is yolokit's trainer the reference's? Replay the reference's own batches from its own initial weights.

    .venv/bin/python benchmarks/train_replay.py --reference-python /root/refenv/bin/python \\
        --model yolo11n.yaml --data path/to/data.yaml [--epochs 40] [--iterations 96] [--imgsz 320] [--batch 16] \\
        [--seed 0] [--memory-format channels_last|contiguous] [--out benchmarks/results/train_replay.json]

Two runs of the same model from random weights differ in two random draws, the initial weights and the augmented
batches, before any difference in the training itself. This script takes both draws away:

1. The reference trains ``--model`` on ``--data`` (``--epochs`` sets the schedule; validation off) in its own
   environment; its public callbacks record its initial weights, the first ``--iterations`` batches its loader
   yields (images after augmentation, labels), and after chosen iterations its weights and running mean losses.
   Then the reference process ends.
2. yolokit's ``Trainer`` (the same settings) starts from those weights and steps through those batches: the loss,
   assigner, optimizer groups, warmup, accumulation, clipping and EMA are then the only differences left.
3. Two crossed runs attribute what remains: ``yolokit init`` (yolokit's own initial weights for the seed, on the
   reference's batches: the same run as the replay when the two initialisations are equal, as they are since
   yolokit draws its weights in the reference's order) and ``yolokit batches`` (the reference's weights on
   yolokit's own augmented batches).

Printed per checkpoint: the mean losses (box, cls, dfl / l1) of each run so far in the epoch, and for the replay
the deviation of yolokit's weight updates from the reference's, ``|dW_yolokit - dW_reference| / |dW_reference|``
per tensor (median and 90th percentile over the tensors; ``dW`` = weights at the checkpoint minus the initial
ones). Adam-type updates of tensors whose gradient is nearly zero flip with float rounding, so single tensors can
deviate a lot while the median stays small; the median is the figure to read. ``--memory-format contiguous``
trains yolokit in the reference's NCHW format instead of its CPU default, channels_last, whose BatchNorm kernel
sums the batch statistics less exactly (up to 2e-3 of a channel's std at 160x160 and batch 16): the only
difference left then is float rounding. Results (2026-12-01) are in ``benchmarks/README.md``.

This file runs in both environments (``--worker reference``); the reference side only calls the reference
package's public API (``YOLO(spec).train(...)`` and its callbacks) and never imports yolokit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

CHECKPOINTS = (1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 160, 192, 256)


def checkpoints(iterations: int) -> list[int]:
    """The iterations after which weights are compared: the fixed ladder up to ``iterations``, and the last one."""
    return sorted({c for c in CHECKPOINTS if c <= iterations} | {iterations})


# --- reference side (its own environment) -------------------------------------------------------------------
def _worker_reference(args: argparse.Namespace) -> None:
    from train_worker import reference_environment

    reference_environment(Path(args.record).parent)
    import torch
    from ultralytics import YOLO

    torch.set_num_threads(1)
    wanted = set(checkpoints(args.iterations))
    record: dict[str, Any] = {"batches": [], "states": {}}

    def state(module: Any) -> dict[str, Any]:
        return {k: v.detach().clone() for k, v in module.state_dict().items()}

    class Recorder:  # the loader the trainer iterates, passing every batch through (and keeping a copy)
        def __init__(self, loader: Any) -> None:
            self.loader = loader

        def __len__(self) -> int:
            return len(self.loader)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.loader, name)

        def __iter__(self) -> Any:
            for batch in self.loader:
                record["batches"].append({k: batch[k].clone() for k in ("img", "cls", "bboxes", "batch_idx")})
                yield batch

    def on_train_start(trainer: Any) -> None:
        record["init"] = state(trainer.model)
        trainer.train_loader = Recorder(trainer.train_loader)

    def on_train_batch_end(trainer: Any) -> None:
        done = len(record["batches"])
        if done in wanted:
            losses = {k: float(v) for k, v in dict(trainer.tloss).items()}
            record["states"][done] = {"model": state(trainer.model), "losses": losses}
        if done >= args.iterations:
            torch.save(record, args.record)
            sys.stdout.flush()
            os._exit(0)  # the rest of the run is not needed

    model = YOLO(args.model)
    model.add_callback("on_train_start", on_train_start)
    model.add_callback("on_train_batch_end", on_train_batch_end)
    with tempfile.TemporaryDirectory() as project:
        model.train(data=args.data, epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, device="cpu",
                    seed=args.seed, workers=0, val=False, plots=False, project=project, name="replay")
    raise SystemExit("the reference run ended before the recorded iterations: lower --iterations")


# --- yolokit side --------------------------------------------------------------------------------------------
def _config(args: argparse.Namespace, project: str) -> Any:
    from yolokit.config import make_config
    from yolokit.train.config import TrainConfig

    return make_config(TrainConfig, dict(data=args.data, epochs=args.epochs, imgsz=args.imgsz, batch=args.batch,
                                         device="cpu", seed=args.seed, workers=0, val=False, plots=False,
                                         verbose=False, threads=1, project=project, name="replay", exist_ok=True))


def yolokit_run(args: argparse.Namespace, init: dict | None, batches: list | None, wanted: set[int]) -> dict:
    """Train ``args.iterations`` iterations in yolokit from ``init`` (None: its own) on ``batches`` (None: its own
    loader, mosaic schedule included) -> ``{"states": {iteration: {"model": state, "losses": {name: mean so far in
    the epoch}}}, "init": the initial state}``."""
    import torch

    from yolokit.model import YOLO
    from yolokit.train.api import prepare_model, seed_everything
    from yolokit.train.hooks import HookBase
    from yolokit.train.trainer import Trainer

    class Stop(Exception):
        pass

    class Replay(Trainer):
        @staticmethod
        def training_memory_format(device: torch.device) -> torch.memory_format:
            if args.memory_format == "contiguous":  # the reference's format: its BatchNorm statistics are exact
                return torch.contiguous_format
            return Trainer.training_memory_format(device)

        def batches(self) -> Any:
            if batches is None:
                return super().batches()
            first = self.epoch * self.batches_per_epoch
            self.loss_mean = None
            return batches[first:first + self.batches_per_epoch]

    class Record(HookBase):
        def after_step(self) -> None:
            done = self.trainer.iteration + 1
            if done in wanted:
                losses = dict(zip(self.trainer.loss_names, self.trainer.loss_mean.tolist(), strict=True))
                states[done] = {"model": {k: v.detach().clone() for k, v in self.trainer.model.state_dict().items()},
                                "losses": losses}
            if done >= args.iterations:
                raise Stop

    states: dict[int, dict] = {}
    with tempfile.TemporaryDirectory() as project:
        config = _config(args, project)
        source = YOLO(args.model)  # built before seeding, as by YOLO(spec).train(): the run's own draw comes next
        seed_everything(args.seed)
        model, metadata, report = prepare_model(source.model, config, None)
        if init is not None:
            model.load_state_dict({k: init[k] for k in model.state_dict()})
        trainer = Replay(model, config, run_dir=Path(project) / "replay", freeze_report=report, metadata=metadata)
        recorder = Record()
        recorder.trainer = trainer
        trainer.hooks.append(recorder)
        own_init = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        try:
            trainer.train()
        except Stop:
            pass
    return {"states": states, "init": own_init}


def update_deviation(init: dict, ours: dict, theirs: dict) -> dict[str, float]:
    """Median and 90th percentile over tensors of ``|dW_ours - dW_theirs| / |dW_theirs|`` (floating tensors that
    moved in the reference run)."""
    import torch

    ratios = []
    for key, value in ours.items():
        if not value.dtype.is_floating_point:
            continue
        start = init[key].float()
        reference_step = theirs[key].float() - start
        norm = float(reference_step.norm())
        if norm > 0:
            ratios.append(float((value.float() - start - reference_step).norm()) / norm)
    ordered = torch.tensor(sorted(ratios))
    return {"median": float(ordered.median()), "p90": float(ordered.quantile(0.9)), "tensors": len(ratios)}


def _losses(row: dict) -> str:
    return " ".join(f"{v:.3f}" for v in row["losses"].values())


def report(args: argparse.Namespace, record: dict) -> dict[str, Any]:
    wanted = set(checkpoints(args.iterations))
    runs = {
        "replay": yolokit_run(args, record["init"], record["batches"], wanted),
        "yolokit init": yolokit_run(args, None, record["batches"], wanted),
        "yolokit batches": yolokit_run(args, record["init"], None, wanted),  # its own loader and hooks
    }
    replay = runs["replay"]
    rows = []
    same_init = all(bool((runs["yolokit init"]["init"][k] == v).all()) for k, v in record["init"].items())
    print(f"yolokit's own initial weights {'equal' if same_init else 'differ from'} the reference's")
    print(f"{'iteration':>9}  {'reference':>22}  " + "  ".join(f"{name:>22}" for name in runs)
          + "  replay's update deviation median / p90")
    for it in sorted(wanted):
        ref = record["states"][it]
        deviation = update_deviation(record["init"], replay["states"][it]["model"], ref["model"])
        cells = [_losses(run["states"][it]) for run in runs.values()]
        print(f"{it:>9}  {_losses(ref):>22}  " + "  ".join(f"{c:>22}" for c in cells)
              + f"  {deviation['median']:.2e} / {deviation['p90']:.2e}")
        rows.append({"iteration": it, "reference": ref["losses"], "deviation": deviation,
                     **{name: run["states"][it]["losses"] for name, run in runs.items()}})
    return {"model": args.model, "data": args.data, "same_initial_weights": same_init, "epochs": args.epochs,
            "imgsz": args.imgsz, "batch": args.batch, "seed": args.seed, "iterations": args.iterations,
            "memory_format": args.memory_format, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference-python", default="")
    parser.add_argument("--model", default="yolo11n.yaml")
    parser.add_argument("--data", required=True)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--iterations", type=int, default=96)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-format", choices=["channels_last", "contiguous"], default="channels_last",
                        help="yolokit's training format (channels_last: its CPU default)")
    parser.add_argument("--out", default="benchmarks/results/train_replay.json")
    parser.add_argument("--worker", choices=["reference"], help=argparse.SUPPRESS)
    parser.add_argument("--record", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "reference":
        _worker_reference(args)
        return 0
    if not args.reference_python:
        parser.error("--reference-python is required (the reference's own environment)")
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        record_file = Path(tmp) / "record.pt"
        command = [args.reference_python, str(Path(__file__).resolve()), "--worker", "reference", "--record",
                   str(record_file), "--model", args.model, "--data", str(Path(args.data).resolve()), "--epochs",
                   str(args.epochs), "--iterations", str(args.iterations), "--imgsz", str(args.imgsz), "--batch",
                   str(args.batch), "--seed", str(args.seed)]
        print(f"reference: recording {args.iterations} iterations of {args.model}", flush=True)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not record_file.is_file():
            raise SystemExit(f"error: the reference worker failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
        record = torch.load(record_file, weights_only=False)  # our own file, written a moment ago by the worker
    result = report(args, record)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
