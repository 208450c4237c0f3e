"""The training loop: :class:`TrainerBase` (epochs of steps with hooks around them) and :class:`Trainer` (detection).

    trainer = Trainer(model, config, run_dir=Path("runs/train"))
    trainer.train()                      # before_train, per epoch: before_epoch, [before_step, step, after_step]...

The loop itself is a few lines; the step is :meth:`Trainer.run_step` (forward, loss, backward, and every
``accumulate`` batches :meth:`Trainer.optimizer_step`: clip the gradient norm to 10, step, EMA update). Everything
else (schedule, mosaic switch, validation, early stopping, outputs, checkpoints) is a hook (:mod:`yolokit.train.hooks`,
:mod:`yolokit.train.output_hooks`). :meth:`Trainer.state_dict` gathers the complete state for an exact resume.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yolokit.train.config import TrainConfig
from yolokit.train.distributed import DistributedSyncHook, current_context, gradient_sync, wrap_model
from yolokit.train.ema import ModelEMA
from yolokit.train.hooks import BestFitnessHook, EpochSetupHook, EvalHook, HookBase, ScheduleHook
from yolokit.train.optim import build_optimizer, choose_optimizer, scaled_weight_decay
from yolokit.train.schedule import Schedule, nominal_accumulate, warmup_iterations
from yolokit.train.threads import choose_train_threads, loader_workers
from yolokit.utils.threads import torch_threads

__all__ = ["TrainerBase", "Trainer", "default_hooks", "loader_workers", "GRAD_CLIP_NORM"]

logger = logging.getLogger(__name__)
GRAD_CLIP_NORM = 10.0


class TrainerBase:
    """Epochs of steps with hooks around each (the shape of detectron2's ``TrainerBase``, per epoch).

    Subclasses provide :meth:`batches` (the epoch's iterable) and :meth:`run_step`. ``iteration`` is the global
    step index ``epoch * batches_per_epoch + inner_iter``; a hook may set ``stop`` to end after the current epoch.
    """

    def __init__(self) -> None:
        self.hooks: list[HookBase] = []
        self.epoch = self.start_epoch = self.epochs = 0
        self.iteration = self.inner_iter = 0
        self.batches_per_epoch = 0
        self.stop = False

    def register_hooks(self, hooks: Iterable[HookBase]) -> None:
        for hook in hooks:
            hook.trainer = self
            self.hooks.append(hook)

    def train(self) -> None:
        """Run epochs ``start_epoch .. epochs - 1`` (fewer when a hook sets ``stop``)."""
        self._call("before_train")
        for epoch in range(self.start_epoch, self.epochs):
            self.epoch = epoch
            self._call("before_epoch")
            for inner_iter, batch in enumerate(self.batches()):
                self.inner_iter = inner_iter
                self.iteration = epoch * self.batches_per_epoch + inner_iter
                self._call("before_step")
                self.run_step(batch)
                self._call("after_step")
            self._call("after_epoch")
            if self.stop:
                break
        self._call("after_train")

    def _call(self, stage: str) -> None:
        for hook in self.hooks:
            getattr(hook, stage)()

    def batches(self) -> Iterable[Any]:
        raise NotImplementedError

    def run_step(self, batch: Any) -> None:
        raise NotImplementedError

    def hook_states(self) -> dict[str, dict[str, Any]]:
        return {hook.name: hook.state_dict() for hook in self.hooks}

    def load_hook_states(self, states: dict[str, dict[str, Any]]) -> None:
        for hook in self.hooks:
            hook.load_state_dict(states.get(hook.name, {}))


class Trainer(TrainerBase):
    """Trains a ``DetectionModel`` on ``config.data`` (see :func:`yolokit.train.api.train` for the whole run).

    Args:
        model: the model to train, already prepared (classes, transferred weights, frozen layers).
        config: the settings.
        run_dir: where outputs go (``weights/``, ``results.csv``, plots).
        freeze_report: what :func:`yolokit.train.freeze.freeze_layers` froze (kept frozen, frozen BN kept in eval).
        metadata: extra metadata for the saved weights (``parent_sha256``...).
        hooks: the hooks to run (default: :func:`default_hooks`).
    """

    task = "detect"  # the task of the models this trainer trains (recorded in the training state)
    loss_sums_batch = True  # the loss grows with the batch (detection's loss * batch): scaled by the world size in DDP
    metric_labels = ("P", "R", "mAP50", "mAP50-95")  # the epoch log's titles of metric_columns

    def __init__(self, model: nn.Module, config: TrainConfig, *, run_dir: Path, freeze_report: Any = None,
                 metadata: dict[str, Any] | None = None, hooks: list[HookBase] | None = None) -> None:
        super().__init__()
        config = config if config.threads is not None else choose_train_threads(config)  # fixed for the run
        self.config, self.run_dir, self.freeze_report = config, Path(run_dir), freeze_report
        self.dist = current_context(config)  # rank, world size, this rank's device (one process: rank 0 of 1)
        self.device = self.dist.device
        self.memory_format = self.training_memory_format(self.device)
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.epochs = config.epochs
        self.metadata = dict(metadata or {})
        self._build_data()
        self._build_optimization()
        # DDP around the model in several processes (self.model stays the unwrapped module that is saved)
        self.forward_model = wrap_model(self.model, self.dist, bool(getattr(config, "sync_bn", False)))
        self.metrics: Any = None  # the last validation's DetectionMetrics (None when not validated)
        self.is_best, self.best_epoch, self.best_fitness = False, -1, float("-inf")
        self.loss_mean: torch.Tensor | None = None  # running mean of the epoch's loss items, (3,)
        self.last_batch: dict[str, Any] | None = None
        self.bar: Any = None
        self.register_hooks(default_hooks(self) if hooks is None else hooks)

    # --- setup ------------------------------------------------------------------------------------------------
    def _build_data(self) -> None:
        from yolokit.config import fit_imgsz
        from yolokit.data.dataset import load_data_config
        from yolokit.data.train_dataset import TrainDataset
        from yolokit.train.checkpoint import dataset_fingerprint

        cfg = self.config
        data = load_data_config(cfg.data)
        if cfg.fraction < 1:
            paths = data.splits["train"]
            data = dataclasses.replace(data, splits={**data.splits, "train": paths[:max(1, round(len(paths) *
                                                                                         cfg.fraction))]})
        self.data = data
        self.stride = int(max(float(s) for s in self.model.stride))
        self.imgsz = int(fit_imgsz(cfg.imgsz, self.stride))
        self.train_dataset = TrainDataset(data, "train", self.imgsz, augment=True, hyp=cfg, stride=self.stride,
                                          batch_size=cfg.batch, seed=cfg.seed, progress=cfg.verbose)
        self.workers = loader_workers(cfg, self.device)
        self.loader = self.build_train_loader(self.train_dataset)
        self.batches_per_epoch = len(self.loader)
        self.val_split = next((s for s in ("val", "test") if data.splits.get(s)), None)
        self.fingerprint = dataset_fingerprint(self.train_dataset.labels, data.root)
        logger.info("Training on %d images (%d batches of %d, %d workers), validating on %s, imgsz=%d",
                    len(self.train_dataset), self.batches_per_epoch, cfg.batch, self.workers,
                    f"split '{self.val_split}'" if self.val_split else "nothing (no val split)", self.imgsz)

    def build_train_loader(self, dataset: Any) -> Any:
        """The training loader: this rank's share of each epoch, ``batch / world_size`` images per step."""
        from yolokit.data.loader import build_dataloader

        return build_dataloader(dataset, self.dist.local_batch(self.config.batch), self.workers, shuffle=True,
                                seed=self.config.seed, rank=self.dist.rank, world_size=self.dist.world_size)

    def _build_loss(self) -> None:
        """``loss_fn(preds, batch) -> (loss, items)`` and ``loss_names`` (a task's trainer overrides this)."""
        from yolokit.losses import build_loss

        cfg = self.config
        # only the gains set explicitly: a loss with other defaults (YOLOv5's box 0.05) keeps its own otherwise
        hyp = {key: getattr(cfg, key) for key in ("box", "cls", "dfl") if key in cfg.given}
        self.loss_fn = build_loss(self.model, {**hyp, "imgsz": self.imgsz})
        self.loss_names = tuple(self.loss_fn.names)

    @staticmethod
    def training_memory_format(device: torch.device) -> torch.memory_format:
        """Layout of the model and batches: channels_last on the CPU, where oneDNN's convolutions (forward and
        backward) are 1.3x faster in it than in NCHW, at the price of BatchNorm statistics summed less exactly
        (docs/training.md); NCHW elsewhere. Saved tensors are made contiguous again (weights/native.py)."""
        return torch.channels_last if device.type == "cpu" else torch.contiguous_format

    @staticmethod
    def dataset_names(data: str) -> dict[int, str]:
        """The class names of the dataset ``data`` (a task's trainer overrides this)."""
        from yolokit.data.dataset import load_data_config

        return load_data_config(data).names

    @staticmethod
    def metrics_summary(metrics: Any) -> dict[str, float]:
        """The numbers of a validation that the weights' metadata and the run's summary record."""
        return {"precision": float(metrics.precision), "recall": float(metrics.recall), "map50": float(metrics.map50),
                "map": float(metrics.map), "fitness": float(metrics.fitness)}

    @staticmethod
    def metric_columns(metrics: Any) -> dict[str, float]:
        """``results.csv`` metric columns (NaN without a validation) -> values; the log shows the part after '/'."""
        keys = (("precision", "precision"), ("recall", "recall"), ("mAP50", "map50"), ("mAP50-95", "map"))
        return {f"metrics/{key}(B)": float(getattr(metrics, attr)) if metrics is not None else math.nan
                for key, attr in keys}

    def plot_dataset_labels(self, path: Path) -> None:
        """``labels.png``: the label statistics of the training set."""
        from yolokit.train import plots

        plots.plot_labels(self.train_dataset.labels, self.model.names, path)

    def plot_batch(self, batch: dict[str, Any], path: Path) -> None:
        """``train_batch{i}.jpg``: a training batch with its labels."""
        from yolokit.train import plots

        plots.plot_train_batch(batch, self.model.names, path)

    def _build_optimization(self) -> None:
        cfg = self.config
        self._build_loss()
        self.choice = choose_optimizer(cfg, len(self.train_dataset), len(self.model.names))
        total = self.batches_per_epoch * self.epochs
        accumulate = nominal_accumulate(cfg.nbs, cfg.batch, total)
        self.optimizer = build_optimizer(self.model, self.choice, scaled_weight_decay(cfg.weight_decay, cfg.batch,
                                                                                      cfg.nbs))
        self.schedule = Schedule(epochs=self.epochs, batches_per_epoch=self.batches_per_epoch, lrf=cfg.lrf,
                                 cosine=cfg.cos_lr, warmup=warmup_iterations(cfg.warmup_epochs, self.epochs,
                                                                             self.batches_per_epoch),
                                 accumulate=accumulate, warmup_bias_lr=self.choice.warmup_bias_lr,
                                 warmup_momentum=cfg.warmup_momentum, momentum=self.choice.momentum)
        self.accumulate = accumulate
        self.last_opt_step = -1
        self.ema = ModelEMA(self.model)
        self.amp = bool(cfg.amp and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda") if self.amp else None

    # --- the loop ---------------------------------------------------------------------------------------------
    def train(self) -> None:
        try:
            with torch_threads(self.config.threads):  # the run's count, restored afterwards
                super().train()
        finally:
            self.loader.close()  # its worker processes persist across epochs

    def batches(self) -> Iterable[Any]:
        from yolokit.utils.progress import progress

        self.loss_mean = None
        self.bar = progress(self.loader, desc=f"{self.epoch + 1}/{self.epochs}", total=self.batches_per_epoch,
                            enabled=self.config.verbose, leave=True)
        return self.bar

    def run_step(self, batch: dict[str, Any]) -> None:
        """Forward and backward of one batch; an optimizer step once ``accumulate`` batches have been summed."""
        batch = self.preprocess(batch)
        step_now = self.iteration - self.last_opt_step >= self.accumulate
        # DDP syncs gradients before an optimizer step and at an epoch's end (the state saved then is every rank's)
        with gradient_sync(self.forward_model, step_now or self.inner_iter == self.batches_per_epoch - 1):
            with torch.autocast(self.device.type, enabled=self.amp):
                preds = self.forward_model(batch["img"])
                loss, items = self.loss_fn(preds, batch)
            if self.loss_sums_batch and self.dist.world_size > 1:
                loss = loss * self.dist.world_size  # DDP averages: the sum over the global batch, as one process
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        items = items.detach().float().cpu()
        i = self.inner_iter
        self.loss_mean = items if self.loss_mean is None else (self.loss_mean * i + items) / (i + 1)
        self.last_batch = batch
        if step_now:
            self.optimizer_step()
            self.last_opt_step = self.iteration

    def preprocess(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Tensors to the device; ``img`` uint8 -> float in [0, 1]."""
        out = {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        out["img"] = (out["img"].float() / 255).contiguous(memory_format=self.memory_format)
        return out

    def optimizer_step(self) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=GRAD_CLIP_NORM)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.model)

    def set_train_mode(self) -> None:
        """``model.train()``, frozen BatchNorm back in eval; raises if a frozen parameter became trainable."""
        from yolokit.train.freeze import assert_frozen, train_mode

        train_mode(self.model, self.freeze_report)
        if self.freeze_report is not None:
            assert_frozen(self.model, self.freeze_report)

    def validate(self, model: nn.Module, *, final: bool = False) -> Any:
        """mAP of ``model`` on the val split with the PyTorch evaluator (never an export) -> ``DetectionMetrics``.

        ``final``: the closing evaluation (per-class table, validation plots when ``plots=True``).
        """
        from yolokit.backends import create_backend
        from yolokit.config import ValConfig, make_config
        from yolokit.eval.validator import validate

        cfg = self.config
        engine = "channels_last" if self.device.type == "cpu" else "eager"
        backend = create_backend(model, self.device, half=False, engine=engine)
        val_cfg = make_config(ValConfig, data=cfg.data, split=self.val_split, imgsz=self.imgsz, batch=cfg.batch * 2,
                              nms=cfg.nms, device=str(self.device), engine=engine, plots=final and cfg.plots,
                              save_json=False, verbose=final and cfg.verbose, workers=min(self.workers, 4))
        return validate(backend, val_cfg, save_dir=self.run_dir)

    # --- state --------------------------------------------------------------------------------------------------
    def lr(self) -> float:
        """The current learning rate of the main parameter group (weights at the chosen lr, not a 3x head group)."""
        groups = self.optimizer.param_groups
        main = [g for g in groups if g["kind"] in ("weight", "muon") and g["initial_lr"] == self.choice.lr]
        return float((main or groups)[0]["lr"])

    def save_weights(self, path: Path) -> Path:
        """The EMA weights with metadata: train args, this epoch's metrics, dataset fingerprint, parent sha256."""
        from yolokit.weights import save_weights

        metrics = None if self.metrics is None else self.metrics_summary(self.metrics)
        provenance = {**self.metadata.get("provenance", {}), "train_args": self.config.to_dict(),
                      "epoch": self.epoch + 1, "metrics": metrics, "dataset_fingerprint": self.fingerprint,
                      "data": self.config.data}
        return save_weights(self.ema.module, path, metadata={**self.metadata, "imgsz": self.imgsz,
                                                             "provenance": provenance})

    def state_dict(self) -> dict[str, Any]:
        """The complete state after epoch ``self.epoch``: loadable with ``torch.load(weights_only=True)``."""
        from yolokit.train.checkpoint import capture_rng

        grads = [p.grad.detach().clone() if p.grad is not None else None for p in self.model.parameters()]
        return {
            "task": self.task, "epoch": self.epoch, "iteration": self.iteration, "last_opt_step": self.last_opt_step,
            "finished": False, "run_dir": str(self.run_dir),
            "config": self.config.to_dict(), "given": sorted(self.config.given),
            "choice": dataclasses.asdict(self.choice), "spec": self.model.spec,
            "names": {int(k): str(v) for k, v in self.model.names.items()}, "metadata": self.metadata,
            "model": self.model.state_dict(), "grads": grads, "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict(), "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "loader": self.loader.state_dict(),
            "loss": self.loss_fn.state_dict() if hasattr(self.loss_fn, "state_dict") else {},
            "hooks": self.hook_states(), "rng": capture_rng(), "frozen": self._frozen_state(),
        }

    def _frozen_state(self) -> dict[str, list[str]]:
        report = self.freeze_report
        return {"names": list(report.frozen_names) if report else [], "bn": list(report.frozen_bn) if report else []}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue after the epoch ``state`` was saved at (its RNG states are restored by the checkpoint hook)."""
        self.model.load_state_dict(state["model"])
        for param, grad in zip(self.model.parameters(), state["grads"], strict=True):
            param.grad = None if grad is None else grad.to(param.device)
        self.optimizer.load_state_dict(state["optimizer"])
        self.ema.load_state_dict(state["ema"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.loader.load_state_dict(state["loader"])
        if state["loss"] and hasattr(self.loss_fn, "load_state_dict"):
            self.loss_fn.load_state_dict(state["loss"])
        self.load_hook_states(state["hooks"])
        self.epoch = int(state["epoch"])
        self.start_epoch = self.epoch + 1
        self.iteration, self.last_opt_step = int(state["iteration"]), int(state["last_opt_step"])


def default_hooks(trainer: Trainer) -> list[HookBase]:
    """The standard hooks, in their required order (see :mod:`yolokit.train.hooks`)."""
    from yolokit.train.output_hooks import CheckpointHook, PlotsHook, ProgressHook, ResultsHook

    sync = [DistributedSyncHook()] if trainer.dist.enabled else []  # loss means and early stop across the ranks
    return [ScheduleHook(), EpochSetupHook(), ProgressHook(), PlotsHook(), EvalHook(),
            BestFitnessHook(trainer.config.patience), *sync, ResultsHook(), CheckpointHook()]
