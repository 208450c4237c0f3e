"""Classification training on the shared trainer: settings, loss and the task's pieces of :class:`Trainer`.

    from yolokit.train.classify import ClassifyTrainConfig, train
    best, summary = train(build_classifier("yolo11n-cls.yaml"), make_config(ClassifyTrainConfig, data="shapes/"))

The loop, schedule, optimizer rules, EMA, checkpoints, exact resume, freezing and transfer are the detection trainer's
(:mod:`yolokit.train.trainer`, :mod:`yolokit.train.api`); :class:`ClassifyTrainer` supplies the class-folder data
(:class:`~yolokit.data.classify.ClassifyDataset`), the loss, the validation (:func:`validate_classifier`) and the
metrics it records (top-1 / top-5 accuracy; fitness = their mean).

Loss: cross-entropy of the head's logits, mean over the batch (the reference's), with ``label_smoothing`` and, for
``cls_pw > 0``, class weights ``w_c = (N / (nc * n_c)) ** cls_pw`` from the training set's class counts ``n_c``
(inverse frequency to the power ``cls_pw``: 0 = unweighted, 1 = fully balanced). The weighted mean divides by the
targets' weights, so the loss scale does not change with ``cls_pw``.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from yolokit.train.config import TrainConfig
from yolokit.train.trainer import Trainer, loader_workers

__all__ = ["ClassifyTrainConfig", "ClassificationLoss", "ClassifyTrainer", "class_weights", "train"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassifyTrainConfig(TrainConfig):
    """Training settings of a classifier: :class:`~yolokit.train.config.TrainConfig`'s keys plus the ones below;
    ``imgsz`` defaults to 224 (ImageNet's crop). Detection keys (``mosaic``, ``box``, ...) are accepted and unused."""

    imgsz: int = 224
    dropout: float = 0.0  # dropout before the head's linear layer
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    cls_pw: float = 0.0  # class-weight power: w_c = (N / (nc * n_c)) ** cls_pw (0: unweighted)
    erasing: float = 0.4  # random-erasing probability of a training image

    def check(self) -> None:
        super().check()
        self.check_range("dropout", ge=0, lt=1)
        self.check_range("label_smoothing", ge=0, lt=1)
        self.check_range("cls_pw", ge=0, le=10)
        from yolokit.data.classify_transforms import ClassifyAugmentConfig

        ClassifyAugmentConfig.from_mapping(self)  # scale, flips, HSV and erasing checked by their owner


def class_weights(labels: Sequence[int], nc: int, power: float) -> torch.Tensor | None:
    """``(nc,)`` weights ``(N / (nc * n_c)) ** power`` (a class without images counts as one); None for power 0."""
    if power <= 0:
        return None
    labels = torch.as_tensor(list(labels), dtype=torch.int64)
    counts = torch.bincount(labels, minlength=nc).clamp(min=1).double()  # n_c
    return (labels.numel() / (nc * counts)).pow(power).float()


class ClassificationLoss:
    """``loss(logits (B, nc), batch) -> (mean cross-entropy, items (1,))``; ``batch["cls"]`` ``(B,)`` class ids."""

    names = ("loss",)

    def __init__(self, label_smoothing: float = 0.0, weight: torch.Tensor | None = None) -> None:
        self.label_smoothing = float(label_smoothing)
        self.weight = weight

    def __call__(self, preds: torch.Tensor, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = preds[1] if isinstance(preds, (list, tuple)) else preds
        weight = None if self.weight is None else self.weight.to(logits.device)
        loss = F.cross_entropy(logits.float(), batch["cls"].long(), weight=weight,
                               label_smoothing=self.label_smoothing)
        return loss, loss.detach().reshape(1)


def samples_fingerprint(samples: Sequence[tuple[str, int]], root: str | Path) -> str:
    """sha256 over ``(path relative to root, class)`` of every training image, independent of where the data lives."""
    digest = hashlib.sha256(b"yolokit-classify-dataset-v1\n")
    base = Path(root).resolve()
    for path, class_id in samples:
        p = Path(path)
        rel = p.relative_to(base) if p.is_relative_to(base) else p
        digest.update(f"{rel.as_posix()}\t{int(class_id)}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


class ClassifyTrainer(Trainer):
    """The shared :class:`Trainer` with a classifier's data, loss, validation, metrics and plots."""

    task = "classify"
    metric_labels = ("top1_acc", "top5_acc")
    loss_sums_batch = False  # a mean over the batch: DDP's gradient average is already the global batch's

    @staticmethod
    def dataset_names(data: str) -> dict[int, str]:
        from yolokit.data.classify import load_classify_data

        return load_classify_data(data).names

    def _build_data(self) -> None:
        from yolokit.data.classify import ClassifyDataset, load_classify_data

        cfg = self.config
        self.data = load_classify_data(cfg.data)
        self.stride, self.imgsz = 1, int(cfg.imgsz)
        self.train_dataset = ClassifyDataset(self.data, "train", self.imgsz, augment=True, hyp=cfg, seed=cfg.seed,
                                             fraction=cfg.fraction)
        self.workers = loader_workers(cfg, self.device)
        self.loader = self.build_train_loader(self.train_dataset)  # this rank's share, batch / world_size per step
        self.batches_per_epoch = len(self.loader)
        self.val_split = self.data.val_split
        self.fingerprint = samples_fingerprint(self.train_dataset.samples, self.data.root)
        if hasattr(self.model, "set_dropout"):
            self.model.set_dropout(cfg.dropout)
        logger.info("Training on %d images of %d classes (%d batches of %d, %d workers), validating on %s, imgsz=%d",
                    len(self.train_dataset), self.data.nc, self.batches_per_epoch, cfg.batch, self.workers,
                    f"split '{self.val_split}'" if self.val_split else "nothing (no val/test split)", self.imgsz)

    def _build_loss(self) -> None:
        cfg = self.config
        weight = class_weights(self.train_dataset.labels, len(self.model.names), cfg.cls_pw)
        self.loss_fn = ClassificationLoss(cfg.label_smoothing, weight)
        self.loss_names = ClassificationLoss.names

    @staticmethod
    def metrics_summary(metrics: Any) -> dict[str, float]:
        return {"top1": float(metrics.top1), "top5": float(metrics.top5), "fitness": float(metrics.fitness)}

    @staticmethod
    def metric_columns(metrics: Any) -> dict[str, float]:
        """The reference's classification columns of ``results.csv``."""
        if metrics is None:
            return {"metrics/accuracy_top1": math.nan, "metrics/accuracy_top5": math.nan}
        return {"metrics/accuracy_top1": float(metrics.top1), "metrics/accuracy_top5": float(metrics.top5)}

    def plot_dataset_labels(self, path: Path) -> None:
        from yolokit.eval.classify_plots import plot_class_counts

        plot_class_counts(self.train_dataset.labels, self.model.names, path)

    def plot_batch(self, batch: dict[str, Any], path: Path) -> None:
        import numpy as np

        from yolokit.eval.plots import plot_image_mosaic

        pixels = (batch["img"].detach().float().cpu() * 255).round().clamp(0, 255).to(torch.uint8)  # [0, 1] -> uint8
        images = [np.ascontiguousarray(img.permute(1, 2, 0).numpy()[..., ::-1]) for img in pixels]
        titles = [self.model.names[int(c)] for c in batch["cls"]]
        plot_image_mosaic(images, [np.zeros((0, 4))] * len(images), [np.zeros(0)] * len(images), None,
                          self.model.names, path, titles=titles)

    def validate(self, model: nn.Module, *, final: bool = False) -> Any:
        """Top-1 / top-5 of ``model`` on the val split (PyTorch backend) -> ``ClassifyMetrics``."""
        from yolokit.backends import create_backend
        from yolokit.config import ValConfig, make_config
        from yolokit.eval.classify import validate_classifier

        cfg = self.config
        engine = "channels_last" if self.device.type == "cpu" else "eager"
        backend = create_backend(model, self.device, half=False, engine=engine)
        val_cfg = make_config(ValConfig, data=cfg.data, split=self.val_split, imgsz=self.imgsz, batch=cfg.batch * 2,
                              device=str(self.device), engine=engine, plots=final and cfg.plots, save_json=False,
                              verbose=final and cfg.verbose, workers=min(self.workers, 4))
        return validate_classifier(backend, val_cfg, save_dir=self.run_dir)


def train(model: nn.Module | None, config: TrainConfig, *, parent: str | Path | None = None) -> tuple[nn.Module,
                                                                                                     dict]:
    """Train (or resume) a classifier: :func:`yolokit.train.api.train` with :class:`ClassifyTrainer`.

    ``config`` is a :class:`ClassifyTrainConfig` (a plain ``TrainConfig`` is converted, keeping the keys given).
    Returns the best weights in a model and ``{top1, top5, fitness, best_epoch, epochs, save_dir}``.
    """
    from yolokit.config import make_config
    from yolokit.train.api import train as run

    if not isinstance(config, ClassifyTrainConfig):
        values = config.to_dict()
        config = make_config(ClassifyTrainConfig, {key: values[key] for key in config.given})
    return run(model, config, parent=parent, trainer_cls=ClassifyTrainer)
