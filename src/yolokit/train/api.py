"""``train(model, config, *, parent=None) -> (best model, metrics)``: one whole training run, or its resumption.

    best, metrics = train(model, make_config(TrainConfig, data="data.yaml", epochs=50))
    best, metrics = train(model, make_config(TrainConfig, resume="runs/train3"))   # continue a killed run exactly

A run: seed everything; prepare the model for the dataset's classes (a model built from a spec is initialised under
the seed; loaded weights are kept, class-head rows matched by class name: :mod:`yolokit.train.transfer`); freeze
(:mod:`yolokit.train.freeze`); create the run directory (``project/name``, numbered: ``runs/train``,
``runs/train2``...), write ``args.yaml``; train; evaluate the best weights once more with the validation plots; return
them loaded in a model, with their metrics.

Determinism: the run executes with ``torch.use_deterministic_algorithms(True, warn_only=True)`` (and cuDNN
deterministic, no benchmark) when ``deterministic=True``; the previous settings are restored afterwards, so the
process is never changed behind the caller's back. torch's thread count is chosen once at the start
(:func:`yolokit.train.threads.choose_train_threads`: ``threads=``, else the cores free then), set for the run and
restored afterwards; it is recorded, and a resume reuses it (the CPU's sums depend on it).
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from yolokit.errors import ConfigError
from yolokit.train.config import RESUME_OVERRIDES, TrainConfig
from yolokit.train.trainer import Trainer

__all__ = ["train", "prepare_model", "seed_everything", "deterministic_mode"]

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic_mode(enabled: bool) -> Iterator[None]:
    """Deterministic torch algorithms (``warn_only``) and cuDNN settings inside the block; restored on exit."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


def train(model: nn.Module, config: TrainConfig, *, parent: str | Path | None = None,
          trainer_cls: type[Trainer] = Trainer) -> tuple[nn.Module, dict]:
    """Train ``model`` with ``config`` (or resume the run ``config.resume`` names) -> ``(best model, metrics)``.

    Args:
        model: the model to train: built from a spec (initialised under ``config.seed``) or carrying loaded weights
            (kept, adapted to the dataset's classes). Ignored when resuming (the run's own state is used).
        config: the settings.
        parent: the weights file ``model`` was loaded from: its sha256 becomes the saved weights' ``parent_sha256``.
        trainer_cls: the task's trainer (``Trainer`` for detection; ``yolokit.train.classify`` passes its own): it
            gives the dataset's class names, the data, loss, validation and metric summary of the task.

    Returns:
        The best weights (fitness = mAP50-95) in a new model (eval mode, ``metadata`` of the saved file), and a dict
        ``{precision, recall, map50, map, fitness, best_epoch, epochs, save_dir, weights}`` (``weights``: the file
        returned) of their final evaluation.
    """
    if config.resume:
        return _resume(config, trainer_cls)
    if not config.data:
        raise ConfigError("train needs a dataset: pass data=path/to/data.yaml")
    from yolokit.train.distributed import distributed_session
    from yolokit.train.threads import choose_train_threads
    from yolokit.utils.threads import torch_threads

    config = choose_train_threads(config)  # before args.yaml: the count is recorded there
    with deterministic_mode(config.deterministic), torch_threads(config.threads), \
            distributed_session(config) as session:
        seed_everything(config.seed)
        model, metadata, report = prepare_model(model, config, parent, trainer_cls)
        run_dir = _run_dir(config)
        trainer = trainer_cls(model, config, run_dir=run_dir, freeze_report=report, metadata=metadata)
        logger.info("Logging results to %s; training for %d epochs", run_dir, config.epochs)
        with session.guard(trainer):
            trainer.train()
        return _finish(trainer)


def _has_weights(model: nn.Module, parent: str | Path | None) -> bool:
    """True for weights loaded from a file; False for a model built from a spec (no weights metadata)."""
    return parent is not None or bool(getattr(model, "metadata", None))


def prepare_model(model: nn.Module, config: TrainConfig, parent: str | Path | None,
                  trainer_cls: type[Trainer] = Trainer) -> tuple[nn.Module, dict, Any]:
    """The model :func:`train` trains: for the dataset's classes, frozen as asked -> ``(model, weights metadata,
    FreezeReport)``. Call it after :func:`seed_everything` (a model built from a spec draws its weights here); a
    script that drives :class:`~yolokit.train.trainer.Trainer` itself (``benchmarks/train_replay.py``) uses it."""
    from yolokit.train.freeze import freeze_layers
    from yolokit.train.transfer import model_builder, prepare_for_training
    from yolokit.utils.io import sha256_file

    names = trainer_cls.dataset_names(config.data)
    parent_sha = None
    if isinstance(config.pretrained, str):
        model, _ = prepare_for_training(config.pretrained, names, spec=model.spec)
        parent_sha = sha256_file(config.pretrained)
    elif config.pretrained and _has_weights(model, parent):
        model, _ = prepare_for_training(model, names, source_label=str(parent) if parent is not None else None)
        parent_sha = sha256_file(parent) if parent is not None else None
    else:
        model = model_builder(model.spec)(model.spec, num_classes=len(names))
        model.names = dict(names)
        model.metadata = {}
        logger.info("Training from random weights (initialised with seed=%d)", config.seed)
    model.metadata = {}  # the saved weights describe this run, not the source's lineage (parent_sha256 links it)
    report = freeze_layers(model, config.freeze)
    parent_name = config.pretrained if isinstance(config.pretrained, str) else parent
    metadata = {"parent_sha256": parent_sha, "provenance": {"parent": str(parent_name) if parent_name else None}}
    return model, metadata, report


def _run_dir(config: TrainConfig) -> Path:
    import yaml

    from yolokit.train.distributed import broadcast_from_main
    from yolokit.utils.dist import is_main_process
    from yolokit.utils.io import atomic_write_text, increment_dir

    run_dir = None
    if is_main_process():
        run_dir = increment_dir(Path(config.project) / config.name, exist_ok=config.exist_ok, mkdir=True)
        (run_dir / "weights").mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "args.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    return Path(broadcast_from_main(None if run_dir is None else str(run_dir)))  # rank 0's numbered directory


def _finish(trainer: Trainer) -> tuple[nn.Module, dict]:
    """Load the best weights, evaluate them once more (with plots), return them and their metrics."""
    from yolokit.utils.dist import is_main_process
    from yolokit.weights import load_weights

    weights = trainer.run_dir / "weights"
    best_path = weights / "best.safetensors"
    summary: dict[str, Any] = {"best_epoch": trainer.best_epoch + 1, "epochs": trainer.epoch + 1,
                               "save_dir": str(trainer.run_dir), "weights": str(best_path)}
    if not is_main_process():  # rank 0 evaluates and returns the best weights; another rank returns its EMA model
        return trainer.ema.module, summary
    best_path = best_path if best_path.is_file() else weights / "last.safetensors"
    summary["weights"] = str(best_path)
    model = load_weights(best_path)
    if trainer.val_split is not None:
        metrics = trainer.validate(model, final=True)
        summary.update(trainer.metrics_summary(metrics))
    logger.info("Training done: %d epochs; best weights %s; results in %s", summary["epochs"], best_path,
                trainer.run_dir)
    return model, summary


def _given_values(config: TrainConfig) -> dict[str, Any]:
    """The settings the user gave, as plain values (to rebuild them in another task's settings class)."""
    values = config.to_dict()
    return {key: values[key] for key in config.given}


def _resume_config(config: TrainConfig, state: dict[str, Any]) -> TrainConfig:
    """The saved run's settings; the keys of ``RESUME_OVERRIDES`` may be changed, any other given key must match."""
    # a run saved before the count was recorded ran with torch's count (its default): continue with the same
    saved = type(config).restore({"threads": torch.get_num_threads(), **state["config"]}, state["given"])
    for key in sorted(config.given - set(RESUME_OVERRIDES)):
        if getattr(config, key) != getattr(saved, key):
            raise ConfigError(f"resume continues a run with its own settings, but {key}={getattr(config, key)!r} "
                              f"differs from the run's {getattr(saved, key)!r}: drop {key}= (or start a new run)")
    if "threads" in config.given and config.threads not in (None, saved.threads):
        logger.warning("threads=%s differs from the run's %s: the resumed run will not be bit-identical to an "
                       "uninterrupted one", config.threads, saved.threads)
    values = saved.to_dict()
    values.update({k: getattr(config, k) for k in config.given & (set(RESUME_OVERRIDES) - {"resume", "model"})
                   if k != "threads" or config.threads is not None})
    values["resume"] = False
    return type(config).restore(values, saved.given)


def _resume(config: TrainConfig, trainer_cls: type[Trainer] = Trainer) -> tuple[nn.Module, dict]:
    from yolokit.config import make_config
    from yolokit.tasks import get_task
    from yolokit.train.checkpoint import load_state, state_path_for
    from yolokit.train.freeze import FreezeReport
    from yolokit.train.transfer import model_builder

    path = state_path_for(config.resume, config.model)
    state = load_state(path)
    if state.get("task", "detect") != trainer_cls.task:  # a run of another task: its own trainer resumes it
        entry = get_task(state["task"])
        return entry.load("trainer")(None, make_config(entry.load("train_config"), _given_values(config)))
    cfg = _resume_config(config, state)
    run_dir = path.parent.parent
    if state["finished"]:
        raise ConfigError(f"the run in {run_dir} finished (epoch {state['epoch'] + 1}/{cfg.epochs}); nothing to "
                          f"resume: train again from model={run_dir / 'weights' / 'last.safetensors'} instead")
    logger.info("Resuming %s from epoch %d/%d", run_dir, state["epoch"] + 2, cfg.epochs)
    from yolokit.train.distributed import distributed_session
    from yolokit.train.threads import choose_train_threads
    from yolokit.utils.threads import torch_threads

    cfg = choose_train_threads(cfg)  # the run's recorded count (a run saved without one: chosen now)
    with deterministic_mode(cfg.deterministic), torch_threads(cfg.threads), distributed_session(cfg) as session:
        model = model_builder(state["spec"])(state["spec"], num_classes=len(state["names"]))
        model.names = {int(k): v for k, v in state["names"].items()}
        params = dict(model.named_parameters())
        for name in state["frozen"]["names"]:
            params[name].requires_grad_(False)
        report = FreezeReport(tuple(state["frozen"]["names"]),
                              sum(p.numel() for p in params.values() if p.requires_grad),
                              sum(p.numel() for p in params.values() if not p.requires_grad),
                              tuple(state["frozen"]["bn"]))
        trainer = trainer_cls(model, cfg, run_dir=run_dir, freeze_report=report, metadata=state["metadata"])
        if state["choice"] != {k: getattr(trainer.choice, k) for k in state["choice"]}:
            raise ConfigError(f"the resumed run would use {trainer.choice}, the saved one used {state['choice']}: "
                              "resume with the same dataset and settings")
        trainer.load_state_dict(state)
        next(h for h in trainer.hooks if h.name == "CheckpointHook").rng = state["rng"]
        with session.guard(trainer):
            trainer.train()
        return _finish(trainer)
