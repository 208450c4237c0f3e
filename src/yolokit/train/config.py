"""``TrainConfig``: every training setting, with the reference's defaults, range-checked before any work starts.

    cfg = make_config(TrainConfig, {"data": "data.yaml", "epochs": "50", "lr0": "0.002"})   # CLI strings too
    cfg.given        # frozenset({"data", "epochs", "lr0"}): the keys the user set

``given`` is what lets ``optimizer=auto`` honour the user: auto picks the optimizer and fills in ``lr0``,
``momentum`` and ``warmup_bias_lr`` only where the user left them at their defaults (the reference's auto
replaces them silently). It records the keyword arguments the dataclass was built with, so it is right for
``make_config`` (which passes only the user's keys), for the CLI and for ``TrainConfig(lr0=0.002)`` alike;
``TrainConfig.restore(values, given)`` rebuilds a saved config (resume) with its original ``given``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from yolokit.config import MAX_IMGSZ, Settings, check_device
from yolokit.errors import ConfigError
from yolokit.utils.dist import check_device_list

__all__ = ["TrainConfig", "OPTIMIZERS", "RESUME_OVERRIDES"]

OPTIMIZERS = ("auto", "SGD", "Adam", "AdamW", "MuSGD")
# Keys a resumed run may change (the rest must equal the run's): where and how verbosely it runs, registration.
# threads too (a count other than the run's continues it, but not bit-identically: the sums depend on it).
RESUME_OVERRIDES = ("resume", "model", "workers", "device", "verbose", "register", "registry", "nproc",
                    "dist_timeout", "threads")


@dataclass(frozen=True)
class TrainConfig(Settings):
    """Training settings (defaults follow the reference implementation's train mode)."""

    # --- run -------------------------------------------------------------------------------------------------
    model: str = ""  # the weights or spec trained (recorded; resume=True reads RUN/weights/last.safetensors here)
    data: str = ""  # dataset YAML (required)
    epochs: int = 100
    patience: int = 100  # stop after this many epochs without a better fitness (mAP50-95); 0 = never
    batch: int = 16  # images per step
    imgsz: int = 640  # training and validation size (rounded up to a stride multiple)
    fraction: float = 1.0  # train on the first fraction of the training images
    workers: int = 8  # data-loading processes, capped at the CPU count (0 = load in the main process)
    device: str = ""  # "" = cuda:0 when available, else cpu; or "cpu", "cuda", "cuda:1"
    threads: int | None = None  # torch CPU threads for the whole run (None: the cores free at its start; recorded)
    seed: int = 0
    deterministic: bool = True  # torch deterministic algorithms (warn_only) for the duration of the run
    amp: bool = True  # mixed precision, used on CUDA only
    resume: bool | str = False  # True (with model=RUN/weights/last.safetensors) or a run directory
    # --- several processes (docs/distributed.md; batch above is the global batch, split over the processes) -----
    nproc: int = 0  # processes 'yolokit train' starts here via torchrun (0: one per GPU of device=0,1,..., else 1)
    sync_bn: bool = False  # BatchNorm statistics over the global batch (SyncBatchNorm, CUDA only)
    dist_timeout: float = 600.0  # seconds a collective waits for the other ranks before the run stops
    # --- outputs ---------------------------------------------------------------------------------------------
    project: str = "runs"
    name: str = "train"
    exist_ok: bool = False  # reuse project/name instead of numbering a new run directory
    save_period: int = -1  # also keep weights/epochN.safetensors every N epochs (< 1: off)
    val: bool = True  # validate after every epoch (the last epoch is always validated)
    nms: bool = True  # YOLO26: False validates the NMS-free one-to-one head instead
    plots: bool = True  # results.png, label statistics, training-batch mosaics, validation plots
    verbose: bool = True
    register: str = ""  # YOLO.train / yolokit train: register best.safetensors as the next NAME:N of a registry
    registry: str = ""  # the registry's folder ("" = the default one)
    # --- weights ---------------------------------------------------------------------------------------------
    pretrained: bool | str = True  # keep loaded weights (False: re-initialise); a path: transfer from that file
    freeze: int | tuple[int | str, ...] | None = None  # N: layers 0..N-1; or indices, names and globs
    # --- optimizer and schedule ------------------------------------------------------------------------------
    optimizer: str = "auto"  # auto | SGD | Adam | AdamW | MuSGD
    lr0: float = 0.01  # initial learning rate
    lrf: float = 0.01  # final learning rate = lr0 * lrf
    momentum: float = 0.937  # SGD momentum / Adam beta1
    weight_decay: float = 5e-4  # scaled by batch * accumulate / nbs
    warmup_epochs: float = 3.0
    warmup_momentum: float = 0.8
    warmup_bias_lr: float = 0.1
    nbs: int = 64  # nominal batch size: gradients are accumulated to about this many images per step
    cos_lr: bool = False  # cosine instead of linear learning-rate decay
    # --- loss gains ------------------------------------------------------------------------------------------
    box: float = 7.5
    cls: float = 0.5
    dfl: float = 1.5  # DFL gain (the L1 box term of YOLO26)
    # --- augmentation (see yolokit.data.augment) -------------------------------------------------------------
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    degrees: float = 0.0
    translate: float = 0.1
    scale: float = 0.5
    shear: float = 0.0
    perspective: float = 0.0
    flipud: float = 0.0
    fliplr: float = 0.5
    mosaic: float = 1.0
    mixup: float = 0.0
    close_mosaic: int = 10  # no mosaic (and no mixup) in the last N epochs

    def __new__(klass, /, *args: Any, **kwargs: Any) -> TrainConfig:  # noqa: N804 - 'cls' is a setting
        self = object.__new__(klass)
        positional = [f.name for f in dataclasses.fields(klass)][: len(args)]
        object.__setattr__(self, "_given", frozenset(positional) | frozenset(kwargs))
        return self

    def check(self) -> None:
        """Every value in range (one-line ``ConfigError`` naming the key), before anything is loaded or written."""
        super().check()
        for key in ("epochs", "batch", "nbs"):
            self.check_range(key, ge=1)
        for key in ("patience", "workers", "seed", "weight_decay", "warmup_epochs", "warmup_bias_lr", "box", "cls",
                    "dfl"):
            self.check_range(key, ge=0)
        self.check_range("imgsz", ge=32, le=MAX_IMGSZ)
        self.check_range("fraction", gt=0, le=1)
        self.check_range("lr0", gt=0)
        self.check_range("lrf", ge=0, le=1)
        self.check_range("momentum", ge=0, lt=1)
        self.check_range("warmup_momentum", ge=0, lt=1)
        if isinstance(self.freeze, int):
            self.check_range("freeze", ge=0)
        if self.threads is not None:
            from yolokit.utils.threads import check_num_threads

            try:
                check_num_threads(self.threads)
            except ConfigError:
                raise ConfigError(f"threads must be an integer >= 1 (or None: adapt to the free cores), got "
                                  f"{self.threads!r}: pass e.g. threads=1") from None
        if not self.name or not self.project:
            raise ConfigError("project and name must not be empty: pass e.g. project=runs name=train")
        self.normalize("optimizer", _canonical_optimizer(self.optimizer))
        self.check_range("nproc", ge=0)
        self.check_range("dist_timeout", gt=0)
        if self.device and "," in str(self.device):
            self.normalize("device", check_device_list("device", self.device))
        elif self.device:
            self.normalize("device", check_device("device", self.device))
        from yolokit.data.augment import TrainAugmentConfig

        TrainAugmentConfig.from_mapping(self)  # the augmentation keys, checked by their owner

    @property
    def given(self) -> frozenset[str]:
        """The keys set explicitly when this config was built (the rest hold their defaults)."""
        return getattr(self, "_given", frozenset())

    def to_dict(self) -> dict[str, Any]:
        """Plain values of every setting (tuples as lists), for args.yaml and the training state."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def restore(cls, values: Mapping[str, Any], given: Iterable[str]) -> TrainConfig:
        """Rebuild a saved config: ``values`` as saved (unknown keys refused), ``given`` as it was."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"saved training settings have unknown keys {unknown}: the run was written by another "
                              "yolokit version; start a new run")
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        config = cls(**fixed)
        object.__setattr__(config, "_given", frozenset(given) & known)
        return config


def _canonical_optimizer(name: Any) -> str:
    lookup = {option.lower(): option for option in OPTIMIZERS}
    if not isinstance(name, str) or name.lower() not in lookup:
        raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}: pass e.g. optimizer=SGD")
    return lookup[name.lower()]
