"""Hooks: everything the training loop does besides the step itself, each in one small object.

A hook overrides any of ``before_train``, ``before_epoch``, ``before_step``, ``after_step``, ``after_epoch`` and
``after_train``; it reaches the trainer through ``self.trainer``. A hook that keeps state across epochs returns it
from ``state_dict()`` (plain types and tensors) and takes it back in ``load_state_dict()``: the checkpoint stores
every hook's state, so a resumed run continues with the same best fitness, patience counter and results rows.

Order matters and is fixed by :func:`yolokit.train.trainer.default_hooks`: the schedule is set before each step; after
an epoch the EMA model is validated, then fitness / early stopping, then the results row, then the checkpoint (last,
so that the state file is the commit point of a finished epoch).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from yolokit.train.trainer import Trainer

__all__ = ["HookBase", "ScheduleHook", "EpochSetupHook", "EvalHook", "BestFitnessHook"]

logger = logging.getLogger(__name__)


class HookBase:
    """Base class: every method is a no-op until overridden. ``name`` keys the hook's saved state."""

    trainer: Trainer

    @property
    def name(self) -> str:
        return type(self).__name__

    def before_train(self) -> None:
        """Called once before the first epoch (of this process: also when resuming)."""

    def before_epoch(self) -> None:
        """Called before each epoch's first step."""

    def before_step(self) -> None:
        """Called before each step."""

    def after_step(self) -> None:
        """Called after each step."""

    def after_epoch(self) -> None:
        """Called after each epoch's last step."""

    def after_train(self) -> None:
        """Called once after the last epoch (also after an early stop)."""

    def state_dict(self) -> dict[str, Any]:
        """State that must survive a resume (empty for stateless hooks)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state_dict` returned; stateless hooks accept only an empty state."""
        if state:
            raise ValueError(f"{self.name} keeps no state, got keys {sorted(state)}")


class ScheduleHook(HookBase):
    """Before each step: learning rates, momentum and gradient accumulation of the current iteration."""

    def before_step(self) -> None:
        t = self.trainer
        t.schedule.apply(t.optimizer, t.iteration, t.epoch)
        t.accumulate = t.schedule.accumulate_at(t.iteration)


class EpochSetupHook(HookBase):
    """Before each epoch: the loader's epoch (sampler order and augmentation draws), mosaic off for the last
    ``close_mosaic`` epochs, the loss's progress (YOLO26's one-to-many weight), train mode with frozen BN in eval."""

    def before_epoch(self) -> None:
        t = self.trainer
        t.loader.set_epoch(t.epoch)
        close = getattr(t.config, "close_mosaic", 0)  # datasets without mosaic (classification) have no switch
        mosaic = not (close and t.epoch >= t.epochs - close)
        if hasattr(t.train_dataset, "set_mosaic") and t.train_dataset.mosaic != mosaic:
            if not mosaic:
                logger.info("Closing mosaic for the last %d epochs (close_mosaic=%d)", t.epochs - t.epoch, close)
            t.train_dataset.set_mosaic(mosaic)
        if hasattr(t.loss_fn, "set_progress"):
            t.loss_fn.set_progress(t.epoch, t.epochs)
        t.set_train_mode()


class EvalHook(HookBase):
    """After each epoch (``val=True``) and always after the last one: validate the EMA model on the val split
    (on the main process only in a multi-process run: the others go on to the epoch's closing all-reduce)."""

    def after_epoch(self) -> None:
        from yolokit.utils.dist import is_main_process

        t = self.trainer
        t.metrics = None
        last = t.epoch == t.epochs - 1
        if t.val_split is not None and (t.config.val or last) and is_main_process():
            t.metrics = t.validate(t.ema.module)


class BestFitnessHook(HookBase):
    """Fitness (mAP50-95 of the epoch's validation), the best epoch, and ``patience`` early stopping.

    An epoch is the new best when its fitness is higher than every earlier one (ties keep the earlier epoch); without
    validation metrics the epoch is not compared. Training stops once ``patience`` epochs have passed without a
    better fitness (``patience=0``: never).
    """

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best_fitness = -math.inf
        self.best_epoch = -1

    def after_epoch(self) -> None:
        t = self.trainer
        t.is_best = False
        if t.metrics is None:
            return
        fitness = float(t.metrics.fitness)
        if fitness > self.best_fitness:
            self.best_fitness, self.best_epoch = fitness, t.epoch
            t.is_best = True
        t.best_epoch, t.best_fitness = self.best_epoch, self.best_fitness
        waited = t.epoch - self.best_epoch
        if self.patience and waited >= self.patience and t.epoch < t.epochs - 1:
            logger.info("Early stop: no better fitness (mAP50-95) in the last %d epochs; best epoch %d (%.4f). "
                        "Pass patience=0 to train every epoch.", self.patience, self.best_epoch + 1,
                        self.best_fitness)
            t.stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"best_fitness": self.best_fitness, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_fitness, self.best_epoch = float(state["best_fitness"]), int(state["best_epoch"])
        self.trainer.best_epoch, self.trainer.best_fitness = self.best_epoch, self.best_fitness
