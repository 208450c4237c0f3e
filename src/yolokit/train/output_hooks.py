"""Hooks that write what a run leaves behind: progress bar, epoch table, results, plots and checkpoints.

Files of a run directory (main process only): ``args.yaml`` (written by the API), ``results.csv`` (a header, then
one row per finished epoch), ``results.png``, ``labels.png`` (label statistics), ``train_batch*.jpg`` (the first
training batches with their boxes), the validation plots of the final evaluation, and ``weights/``
(``last.safetensors``, ``best.safetensors``, ``epochN.safetensors`` with ``save_period``, ``last_state.pt``).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from yolokit.train.hooks import HookBase
from yolokit.utils.dist import is_main_process

__all__ = ["ProgressHook", "PlotsHook", "ResultsHook", "CheckpointHook", "results_row"]

logger = logging.getLogger(__name__)
PLOTTED_BATCHES = 3  # train_batch mosaics at the start of the run and when mosaic closes


class ProgressHook(HookBase):
    """The epoch's progress bar: epoch, running mean losses, instances in the batch, image size (and tqdm's it/s)."""

    def before_epoch(self) -> None:
        t = self.trainer
        if t.config.verbose:
            logger.info("%11s" * (3 + len(t.loss_names)), "Epoch", *t.loss_names, "Instances", "Size")

    def after_step(self) -> None:
        t = self.trainer
        if not hasattr(t.bar, "set_description") or t.loss_mean is None:
            return
        batch = t.last_batch
        t.bar.set_description(("%11s" + "%11.4g" * (len(t.loss_mean) + 2)) % (
            f"{t.epoch + 1}/{t.epochs}", *t.loss_mean.tolist(), batch["cls"].shape[0], batch["img"].shape[-1]))

    def after_epoch(self) -> None:
        close = getattr(self.trainer.bar, "close", None)
        if close is not None:
            close()


class PlotsHook(HookBase):
    """``labels.png`` before the first epoch; ``train_batch{i}.jpg`` for the first batches of the run and of the
    first epoch without mosaic (``plots=True``, main process)."""

    def _enabled(self) -> bool:
        return bool(self.trainer.config.plots) and is_main_process()

    def before_train(self) -> None:
        t = self.trainer
        if self._enabled() and t.start_epoch == 0:
            t.plot_dataset_labels(t.run_dir / "labels.png")

    def after_step(self) -> None:
        t = self.trainer
        close = getattr(t.config, "close_mosaic", 0)
        first_closed = t.epochs - close if close and t.epochs > close else None
        if not self._enabled() or t.inner_iter >= PLOTTED_BATCHES or t.epoch not in (0, first_closed):
            return
        t.plot_batch(t.last_batch, t.run_dir / f"train_batch{t.iteration}.jpg")


def results_row(trainer: Any, seconds: float) -> dict[str, float]:
    """One ``results.csv`` row: epoch (1-based), time, mean training losses, P, R, mAP50, mAP50-95, lrs."""
    t = trainer
    row: dict[str, float] = {"epoch": t.epoch + 1, "time": round(seconds, 3)}
    losses = t.loss_mean.tolist() if t.loss_mean is not None else [math.nan] * len(t.loss_names)
    row.update({f"train/{name}": round(float(v), 5) for name, v in zip(t.loss_names, losses, strict=True)})
    row.update({key: round(value, 5) for key, value in t.metric_columns(t.metrics).items()})  # the task's columns
    for i, group in enumerate(t.optimizer.param_groups):
        row[f"lr/pg{i}"] = float(group["lr"])
    return row


class ResultsHook(HookBase):
    """After each epoch: its row in ``results.csv`` (a resumed run replaces rows of epochs it repeats),
    ``results.png``, and one line of the epoch table in the log."""

    COLUMNS = ("P", "R", "mAP50", "mAP50-95", "lr", "seconds")  # detection's (trainer.metric_labels for others)

    def __init__(self) -> None:
        self._start = 0.0

    def before_train(self) -> None:
        """A new run trained into an existing directory (``exist_ok=True``) starts a new ``results.csv``."""
        t = self.trainer
        path = t.run_dir / "results.csv"
        if t.start_epoch == 0 and is_main_process() and path.is_file():
            logger.info("%s: replaced (a new run, not a resume, in an existing run directory)", path)
            path.unlink()

    def before_epoch(self) -> None:
        self._start = time.perf_counter()

    def after_epoch(self) -> None:
        t = self.trainer
        row = results_row(t, time.perf_counter() - self._start)
        self._log(row, header=t.epoch == t.start_epoch)
        if is_main_process():
            from yolokit.train import plots

            path = t.run_dir / "results.csv"
            plots.write_results_row(path, row)
            if t.config.plots:
                plots.plot_results(path, t.run_dir / "results.png")

    def _log(self, row: dict[str, float], header: bool) -> None:
        t = self.trainer
        names = tuple(getattr(t, "metric_labels", self.COLUMNS[:-2]))
        if header:
            logger.info("%11s" * (3 + len(t.loss_names) + len(names)), "Epoch", *t.loss_names, *names, "lr",
                        "seconds")
        values = [row[f"train/{n}"] for n in t.loss_names]
        values += [row[k] for k in t.metric_columns(None)]
        logger.info("%11s" + "%11.4g" * (len(values) + 1) + "%11.1f", f"{t.epoch + 1}/{t.epochs}", *values, t.lr(),
                    row["time"])


class CheckpointHook(HookBase):
    """After each epoch: ``last`` (and ``best`` / ``epochN``) EMA weights, then the training state (the commit point).

    Before training (a resumed run): restore the RNG states saved with the state, right before the next epoch, so
    the run continues exactly as if it had never stopped.
    """

    def __init__(self) -> None:
        self.rng: dict[str, Any] | None = None  # set by the API when resuming

    def before_train(self) -> None:
        if self.rng is not None:
            from yolokit.train.checkpoint import restore_rng

            restore_rng(self.rng)
            self.rng = None

    def after_epoch(self) -> None:
        t = self.trainer
        weights = t.run_dir / "weights"
        t.save_weights(weights / "last.safetensors")
        if t.is_best or t.val_split is None:
            t.save_weights(weights / "best.safetensors")
        period = t.config.save_period
        if period > 0 and (t.epoch + 1) % period == 0:
            t.save_weights(weights / f"epoch{t.epoch + 1}.safetensors")
        self._save_state(t.state_dict())

    def after_train(self) -> None:
        state = self.trainer.state_dict()
        state["finished"] = True
        self._save_state(state)

    def _save_state(self, state: dict[str, Any]) -> None:
        from yolokit.train.checkpoint import STATE_FILE, save_state

        if is_main_process():
            save_state(self.trainer.run_dir / "weights" / STATE_FILE, state)
