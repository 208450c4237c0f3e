"""``validate_classifier(backend, config)``: top-1 / top-5 accuracy of a classifier on a class-folder split.

Pipeline: decode (BGR) -> short-side resize + centre crop at ``imgsz`` (the reference's eval transform,
:func:`yolokit.data.classify_transforms.eval_crop`) -> RGB / 255 and the weights' recorded normalisation ->
backend -> :class:`~yolokit.eval.classify_metrics.ClassifyEvaluator`. The main process writes ``metrics.json`` and,
with ``plots``, ``confusion_matrix.png``, ``confusion_matrix_normalized.png`` and ``val_batch{0,1,2}_{labels,pred}.jpg``
to the run directory. Settings are those of :class:`~yolokit.config.ValConfig` (``imgsz``, ``batch``, ``split``,
``plots``, ``workers`` = decoding threads, ``verbose``, ``project`` / ``name``); detection-only keys are ignored.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from yolokit.config import ValConfig
from yolokit.errors import DatasetError
from yolokit.eval.classify_metrics import ClassifyEvaluator, ClassifyMetrics
from yolokit.utils.dist import is_main_process
from yolokit.utils.io import increment_dir
from yolokit.utils.progress import progress

__all__ = ["validate_classifier"]

logger = logging.getLogger(__name__)
PLOT_BATCHES = 3


def _batches(dataset: Any, batch: int, workers: int) -> Iterator[dict[str, Any]]:
    """Collated batches in dataset order, decoded by ``workers`` threads (0: in this thread), one batch ahead."""
    starts = range(0, len(dataset), batch)
    load = lambda start: dataset.collate_fn([dataset[i] for i in range(start, min(start + batch, len(dataset)))])
    if workers < 1:
        yield from map(load, starts)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = [pool.submit(load, s) for s in starts[:2]]
        for k in range(len(starts)):
            result = pending[k].result()
            if k + 2 < len(starts):
                pending.append(pool.submit(load, starts[k + 2]))
            yield result


def _split(data: Any, wanted: str) -> str:
    if wanted in data.splits:
        return wanted
    fallback = data.val_split if wanted == "val" else None
    if fallback is None:
        raise DatasetError(f"classification dataset {data.root} has no '{wanted}' split (has: "
                           f"{', '.join(data.splits)}): pass split=train or add {data.root / wanted}/<class>/")
    logger.info("No '%s' split in %s: validating on '%s'", wanted, data.root, fallback)
    return fallback


def _check_classes(backend: Any, names: dict[int, str], source: str) -> None:
    model_names = dict(backend.names)
    if len(model_names) != len(names):
        raise DatasetError(f"dataset {source} has {len(names)} classes but the model predicts {len(model_names)}: "
                           "validate on a dataset with the model's classes")
    differ = [i for i in names if str(model_names.get(i)) != names[i]]
    if differ:
        i = differ[0]
        logger.warning("Class names differ between the model and %s (%d of %d, e.g. %d: %r vs %r); accuracy uses "
                       "the class indices", source, len(differ), len(names), i, model_names.get(i), names[i])


def validate_classifier(backend: Any, config: ValConfig, *, save_dir: str | Path | None = None) -> ClassifyMetrics:
    """Validate ``backend`` on ``config.data`` (a class-folder dataset or its YAML) and return the metrics.

    Raises:
        DatasetError: dataset problems, a missing split, or a class count other than the model's.
    """
    from yolokit.data.classify import ClassifyDataset, load_classify_data
    from yolokit.predict.classify import crop_options, transform_params

    data = load_classify_data(config.data)
    split = _split(data, config.split)
    imgsz = config.imgsz if isinstance(config.imgsz, int) else int(max(config.imgsz))
    metadata = getattr(backend, "metadata", None)
    dataset = ClassifyDataset(data, split, imgsz=imgsz, augment=False,
                              crop_options=crop_options(metadata, (imgsz, imgsz)))
    _check_classes(backend, dataset.names, config.data)
    evaluator, plots, times = _evaluate(backend, dataset, config, transform_params(metadata))
    metrics = evaluator.compute()
    metrics.speed = {key: value * 1e3 / max(len(dataset), 1) for key, value in times.items()}
    if is_main_process():
        logger.info("\n%s", metrics.format_table(classes=config.verbose))
        logger.info("Speed: %.1fms preprocess, %.1fms inference, %.1fms postprocess per image (batch %d)",
                    metrics.speed["preprocess"], metrics.speed["inference"], metrics.speed["postprocess"],
                    config.batch)
        run_dir = _run_dir(config, save_dir)
        metrics.save_json(run_dir / "metrics.json", extra={"config": dataclasses.asdict(config), "data": config.data,
                                                           "split": split})
        if config.plots:
            _save_plots(metrics, plots, run_dir)
        logger.info("Results saved to %s", run_dir)
    return metrics


def _evaluate(backend: Any, dataset: Any, config: ValConfig, params: dict[str, Any]
              ) -> tuple[ClassifyEvaluator, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], dict[str, float]]:
    """Run ``backend`` over ``dataset`` -> (filled evaluator, the first batches for the plots, seconds per stage)."""
    from yolokit.predict.classify import normalize_batch

    evaluator, plots = ClassifyEvaluator(dataset.names), []
    times = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
    keep_plots = config.plots and is_main_process()
    batches = _batches(dataset, max(1, config.batch), config.workers)
    total = -(-len(dataset) // max(1, config.batch))
    for k, batch in enumerate(progress(batches, desc=dataset.split, total=total, enabled=config.verbose)):
        start = time.perf_counter()
        images = normalize_batch(batch["img"].float().div_(255.0), params)
        prepared = time.perf_counter()
        probs = backend(images).float().cpu()  # (B, nc)
        inferred = time.perf_counter()
        evaluator.update(probs, batch["cls"])
        times["preprocess"] += prepared - start
        times["inference"] += inferred - prepared
        times["postprocess"] += time.perf_counter() - inferred
        if keep_plots and k < PLOT_BATCHES:
            plots.append((batch["img"], batch["cls"], probs))
    return evaluator, plots, times


def _run_dir(config: ValConfig, save_dir: str | Path | None) -> Path:
    if save_dir is not None:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        return Path(save_dir)
    return increment_dir(Path(config.project) / config.name, exist_ok=config.exist_ok)


def _save_plots(metrics: ClassifyMetrics, batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                run_dir: Path) -> None:
    import numpy as np

    from yolokit.eval.classify_plots import plot_class_confusion
    from yolokit.eval.plots import plot_image_mosaic

    plot_class_confusion(metrics.confusion, metrics.names, run_dir / "confusion_matrix.png")
    plot_class_confusion(metrics.confusion, metrics.names, run_dir / "confusion_matrix_normalized.png",
                         normalize=True)
    none = np.zeros((0, 4))
    for k, (images, targets, probs) in enumerate(batches):
        bgr = [np.ascontiguousarray(img.permute(1, 2, 0).numpy()[..., ::-1]) for img in images]
        empty = [none] * len(bgr)
        truth = [metrics.names[int(t)] for t in targets]
        top = probs.max(1)
        guess = [f"{metrics.names[int(c)]} {float(p):.2f}" for p, c in zip(top.values, top.indices, strict=True)]
        plot_image_mosaic(bgr, empty, [np.zeros(0)] * len(bgr), None, metrics.names,
                          run_dir / f"val_batch{k}_labels.jpg", titles=truth)
        plot_image_mosaic(bgr, empty, [np.zeros(0)] * len(bgr), None, metrics.names,
                          run_dir / f"val_batch{k}_pred.jpg", titles=guess)
