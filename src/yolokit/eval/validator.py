"""``validate(backend, config)``: run a detector over a dataset split and measure COCO mAP.

Image pipeline (the reference's validation, re-derived):

1. Decode the image (BGR) and resize it so its long side is ``imgsz`` (INTER_AREA when shrinking, INTER_LINEAR
   when enlarging).
2. Batches: with ``rect=True`` (and a backend that accepts any input size) the images are sorted by aspect ratio
   ``h / w`` and every batch gets its own input shape; otherwise every batch is ``imgsz`` x ``imgsz``.
   Batch shape rule, sides in units of ``imgsz``: all images landscape (max ratio < 1) -> ``(max_ratio, 1)``; all
   portrait (min ratio > 1) -> ``(1, 1 / min_ratio)``; mixed -> ``(1, 1)``. Each side becomes
   ``ceil(side * imgsz / stride + 0.5) * stride``: the smallest stride multiple that leaves at least half a stride
   of padding, so the border objects keep some context (a 320x320 image at imgsz=320 runs at 352x352).
3. Letterbox (``scaleup=False``, centred, grey 114) to the batch shape, BGR->RGB, /255.
4. Forward; NMS with ``multi_label=True`` (or the YOLO26 end-to-end top-k when ``nms=False``), then boxes are
   mapped back exactly (per-axis gain of the resize, minus the letterbox offset) and clipped to the image.
5. :class:`~yolokit.eval.evaluator.DetectionEvaluator` (COCO-exact AP, P/R/F1, confusion matrix).

Speed is the wall time per image of steps 1+3 (``preprocess``, decode excluded), 4 forward (``inference``) and
NMS + scale back (``postprocess``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolokit.config import ValConfig
from yolokit.data.transforms import to_input_tensor
from yolokit.errors import ConfigError, DatasetError
from yolokit.eval.evaluator import DetectionEvaluator
from yolokit.eval.metrics import DetectionMetrics
from yolokit.ops.boxes import scale_boxes, xywh2xyxy
from yolokit.utils.dist import is_main_process
from yolokit.utils.io import atomic_write_json, increment_dir
from yolokit.utils.progress import progress

logger = logging.getLogger(__name__)

RECT_PAD = 0.5  # extra padding of rect batch shapes, in strides
PLOT_BATCHES = 3  # val_batch{0,1,2}_{labels,pred}.jpg


def plan_batches(shapes_hw: np.ndarray, imgsz: int, stride: int, batch: int,
                 rect: bool) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """Split image indices into batches with their input shape ``(H, W)`` (see the module docstring for the rule).

    Args:
        shapes_hw: (N, 2) original image sizes.
    Returns:
        ``[(indices (b,), (H, W)), ...]`` covering every image once.
    """
    count = len(shapes_hw)
    shapes_hw = np.asarray(shapes_hw, dtype=np.float64).reshape(-1, 2)
    square = int(math.ceil(imgsz / stride) * stride)
    if not rect:
        return [(np.arange(i, min(i + batch, count)), (square, square)) for i in range(0, count, batch)]
    ratios = shapes_hw[:, 0] / shapes_hw[:, 1]
    order = np.argsort(ratios, kind="stable")
    plan = []
    for start in range(0, count, batch):
        indices = order[start:start + batch]
        low, high = ratios[indices].min(), ratios[indices].max()
        sides = (high, 1.0) if high < 1 else (1.0, 1.0 / low) if low > 1 else (1.0, 1.0)
        h, w = (int(math.ceil(side * imgsz / stride + RECT_PAD)) * stride for side in sides)
        plan.append((indices, (h, w)))
    return plan


def resize_long_side(image: np.ndarray, imgsz: int) -> np.ndarray:
    """Resize a BGR image so that its long side is ``imgsz`` (aspect ratio kept)."""
    import cv2

    h, w = image.shape[:2]
    r = imgsz / max(h, w)
    if r == 1:
        return image
    size = (min(max(1, round(w * r)), imgsz), min(max(1, round(h * r)), imgsz))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR)


def prepare_image(image: np.ndarray, imgsz: int, shape_hw: tuple[int, int],
                  stride: int) -> tuple[np.ndarray, tuple[float, float, int, int]]:
    """Resize + letterbox one image -> (padded BGR image, (gain_x, gain_y, left, top)) for :func:`unletterbox`."""
    from yolokit.data.transforms import letterbox

    h0, w0 = image.shape[:2]
    resized = resize_long_side(image, imgsz)
    padded, (ratio, _), (left, top) = letterbox(resized, shape_hw, auto=False, stride=stride, scaleup=False)
    new_w, new_h = round(resized.shape[1] * ratio), round(resized.shape[0] * ratio)
    return padded, (new_w / w0, new_h / h0, left, top)


def unletterbox(det: torch.Tensor, mapping: tuple[float, float, int, int], shape_hw: tuple[int, int]) -> torch.Tensor:
    """(n, 6) xyxy in network-input pixels -> original-image pixels, clipped to ``shape_hw`` (``scale_boxes``
    with the per-axis gains and the offset recorded by :func:`prepare_image`)."""
    gain_x, gain_y, left, top = mapping
    return scale_boxes(det, None, shape_hw, ratio_pad=((gain_y, gain_x), (left, top)))


def labels_to_target(labels: Any) -> dict[str, np.ndarray]:
    """ImageLabels (normalised ``xywh``) -> ``{"boxes_xyxy": (m, 4) pixels, "cls": (m,), "iscrowd": (m,) bool}``.

    The image's boxes come first, then its COCO crowd regions (``iscrowd`` True: ignored by the metrics).
    """
    h, w = labels.shape
    crowd_boxes = getattr(labels, "crowd_bboxes", np.zeros((0, 4)))
    crowd_cls = getattr(labels, "crowd_cls", np.zeros(0, dtype=np.int64))
    boxes = np.concatenate([np.asarray(labels.bboxes, dtype=np.float64).reshape(-1, 4),
                            np.asarray(crowd_boxes, dtype=np.float64).reshape(-1, 4)]) * np.array([w, h, w, h])
    xyxy = xywh2xyxy(boxes)
    cls = np.concatenate([np.asarray(labels.cls, dtype=np.int64).reshape(-1),
                          np.asarray(crowd_cls, dtype=np.int64).reshape(-1)])
    iscrowd = np.arange(len(cls)) >= len(labels.cls)
    return {"boxes_xyxy": xyxy, "cls": cls, "iscrowd": iscrowd}


def _load_batches(dataset: Any, plan: Sequence[tuple[np.ndarray, Any]],
                  workers: int) -> Iterator[list[np.ndarray]]:
    """Decoded images of each planned batch, in order; with ``workers`` > 0 the next batch is read meanwhile."""
    if workers <= 0:
        for indices, _ in plan:
            yield [dataset.load_image(int(i)) for i in indices]
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="val-load") as pool:
        def submit(k: int) -> list[Future]:
            return [pool.submit(dataset.load_image, int(i)) for i in plan[k][0]]

        pending = submit(0) if plan else []
        for k in range(len(plan)):
            current, pending = pending, (submit(k + 1) if k + 1 < len(plan) else [])
            yield [future.result() for future in current]


def _nms_free(config: ValConfig, backend: Any) -> bool:
    """True when the YOLO26 end-to-end head is requested (``nms=False`` or the deprecated ``end2end=True``)."""
    wanted = (not config.nms) or bool(config.end2end)
    if wanted and not backend.end2end:
        raise ConfigError("nms=False (end-to-end, NMS-free) needs a YOLO26 model with a one-to-one head; this "
                          "model has none: keep nms=True")
    return wanted


def _check_classes(backend: Any, names: dict[int, str], data_path: str) -> None:
    model_nc = len(backend.names)
    if model_nc != len(names):
        raise DatasetError(f"dataset {data_path} has {len(names)} classes but the model predicts {model_nc}: "
                           "validate on the dataset the model was trained for")


class _Timer:
    """Accumulates wall time (seconds) per stage."""

    def __init__(self) -> None:
        self.total: dict[str, float] = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}

    def add(self, stage: str, start: float, sync: bool = False) -> float:
        if sync and torch.cuda.is_available():
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.total[stage] += now - start
        return now

    def per_image_ms(self, images: int) -> dict[str, float]:
        return {k: 1000.0 * v / max(images, 1) for k, v in self.total.items()}


def _postprocess(output: torch.Tensor, config: ValConfig, nms_free: bool) -> list[torch.Tensor]:
    from yolokit.ops.nms import filter_end2end, non_max_suppression

    if nms_free:
        return filter_end2end(output, config.conf, None, config.max_det)
    return non_max_suppression(output, config.conf, config.iou, multi_label=True, max_det=config.max_det)


def _coco_rows(det: np.ndarray, image_id: Any, file_name: str, category_ids: list[int]) -> list[dict[str, Any]]:
    """predictions.json rows (COCO results format: bbox = ``ltwh`` ``[x1, y1, w, h]`` in pixels)."""
    return [{"image_id": image_id, "file_name": file_name,
             "category_id": int(category_ids[int(c)]) if category_ids else int(c),
             "bbox": [round(float(x1), 3), round(float(y1), 3), round(float(x2 - x1), 3), round(float(y2 - y1), 3)],
             "score": round(float(s), 5)} for x1, y1, x2, y2, s, c in det.tolist()]


@dataclasses.dataclass
class _RunState:
    """What the batch loop collects besides the evaluator."""

    timer: _Timer = dataclasses.field(default_factory=_Timer)
    predictions: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    plot_batches: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def _run_batch(backend: Any, images: list[np.ndarray], indices: np.ndarray, shape_hw: tuple[int, int],
               dataset: Any, config: ValConfig, nms_free: bool, evaluator: DetectionEvaluator,
               state: _RunState, keep_for_plots: bool) -> None:
    start = time.perf_counter()
    prepared = [prepare_image(image, config.imgsz, shape_hw, backend.stride) for image in images]
    batch = to_input_tensor([padded for padded, _ in prepared])
    start = state.timer.add("preprocess", start)
    output = backend(batch)
    start = state.timer.add("inference", start, sync=True)
    dets = _postprocess(output, config, nms_free)
    labels = [dataset.labels[int(i)] for i in indices]
    originals = [unletterbox(det, mapping, label.shape).cpu().numpy()
                 for det, (_, mapping), label in zip(dets, prepared, labels, strict=True)]
    state.timer.add("postprocess", start)
    targets = [labels_to_target(label) for label in labels]
    ids = [label.image_id if label.image_id is not None else int(i) for label, i in zip(labels, indices, strict=True)]
    evaluator.update(originals, targets, image_ids=ids)
    if config.save_json:
        category_ids = list(getattr(dataset.data, "coco_category_ids", []) or [])
        for det, image_id, label in zip(originals, ids, labels, strict=True):
            state.predictions.extend(_coco_rows(det, image_id, Path(label.im_file).name, category_ids))
    if keep_for_plots:
        state.plot_batches.append(_plot_record(prepared, dets, targets, labels))


def _plot_record(prepared: list, dets: list[torch.Tensor], targets: list[dict], labels: list) -> dict[str, Any]:
    """Letterboxed images with GT and predictions in network-input pixels (for the val_batch mosaics)."""
    gt_boxes, gt_cls = [], []
    for target, (_, (gain_x, gain_y, left, top)) in zip(targets, prepared, strict=True):
        solid = ~target["iscrowd"]  # crowd regions are not drawn as ground truth
        boxes = target["boxes_xyxy"][solid] * np.array([gain_x, gain_y, gain_x, gain_y]) + np.array([left, top] * 2)
        gt_boxes.append(boxes)
        gt_cls.append(target["cls"][solid])
    dets_np = [det.cpu().numpy() for det in dets]
    return {"images": [padded for padded, _ in prepared], "gt_boxes": gt_boxes, "gt_cls": gt_cls, "pred": dets_np,
            "titles": [Path(x.im_file).name for x in labels]}


def _resolve_run_dir(config: ValConfig, save_dir: str | Path | None) -> Path:
    if save_dir is not None:
        path = Path(save_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return increment_dir(Path(config.project) / config.name, exist_ok=config.exist_ok)


def validate(backend: Any, config: ValConfig, *, save_dir: str | Path | None = None) -> DetectionMetrics:
    """Validate ``backend`` on ``config.data`` / ``config.split`` and return the metrics.

    ``backend`` is any callable with the ``TorchBackend`` surface (``stride``, ``names``, ``dynamic``, ``end2end``,
    ``set_nms_free``). The main process writes ``metrics.json`` (and ``predictions.json`` when ``save_json``, plus the
    plots when ``plots``) to ``save_dir`` or a new ``project/name`` run directory. Dataset problems raise
    ``DatasetError``.
    """
    from yolokit.data.dataset import DetectionDataset, load_data_config

    main = is_main_process()
    data = load_data_config(config.data)
    dataset = DetectionDataset(data, config.split, progress=config.verbose and main)
    _check_classes(backend, dataset.names, config.data)
    nms_free = _nms_free(config, backend)
    rect = bool(config.rect and getattr(backend, "dynamic", True))
    plan = plan_batches(np.array([label.shape for label in dataset.labels]), config.imgsz, backend.stride,
                        max(1, config.batch), rect)
    evaluator, state = DetectionEvaluator(dataset.names), _RunState()
    previous = bool(getattr(backend, "nms_free", False))  # restored afterwards (a file may hold one head only)
    if backend.end2end:
        backend.set_nms_free(nms_free)
    try:
        loader = _load_batches(dataset, plan, config.workers)
        bar = progress(zip(plan, loader, strict=True), desc=config.split, total=len(plan),
                       enabled=config.verbose)
        for k, ((indices, shape_hw), images) in enumerate(bar):
            _run_batch(backend, images, indices, shape_hw, dataset, config, nms_free, evaluator, state,
                       keep_for_plots=config.plots and main and k < PLOT_BATCHES)
    finally:
        if nms_free != previous:
            backend.set_nms_free(previous)
    metrics = evaluator.compute()
    metrics.speed = state.timer.per_image_ms(len(dataset))
    if main:
        _report(metrics, plan, config)
        run_dir = _resolve_run_dir(config, save_dir)
        _save_outputs(metrics, state, dataset, config, run_dir, nms_free)
        metrics.save_dir = run_dir
        logger.info("Results saved to %s", run_dir)
    return metrics


# One line under the table, so a small difference from the reference's printout is not read as a bug (README).
COCO_NOTE = ("mAP is COCO's, equal to pycocotools; the reference's own evaluator differs slightly on the same "
             "predictions (e.g. 0.7118 there, 0.7101 in pycocotools)")


def _report(metrics: DetectionMetrics, plan: list, config: ValConfig) -> None:
    logger.info("\n%s", metrics.format_table(classes=config.verbose))
    logger.info(COCO_NOTE)
    speed = metrics.speed
    logger.info("Speed: %.1fms preprocess, %.1fms inference, %.1fms postprocess per image (batch %d, %d shapes)",
                speed["preprocess"], speed["inference"], speed["postprocess"], config.batch,
                len({shape for _, shape in plan}))


def _save_outputs(metrics: DetectionMetrics, state: _RunState, dataset: Any, config: ValConfig, run_dir: Path,
                  nms_free: bool) -> None:
    extra = {"config": dataclasses.asdict(config), "data": str(dataset.data.yaml_path or config.data),
             "split": config.split, "head": "end2end" if nms_free else "nms"}
    metrics.save_json(run_dir / "metrics.json", extra=extra)
    if config.save_json:
        atomic_write_json(run_dir / "predictions.json", state.predictions)
    if config.plots:
        _save_plots(metrics, state, dataset.names, run_dir)


def _save_plots(metrics: DetectionMetrics, state: _RunState, names: dict[int, str], run_dir: Path) -> None:
    from yolokit.eval.plots import plot_image_mosaic, plot_metrics

    plot_metrics(metrics, run_dir)
    for k, record in enumerate(state.plot_batches):
        plot_image_mosaic(record["images"], record["gt_boxes"], record["gt_cls"], None, names,
                          run_dir / f"val_batch{k}_labels.jpg", titles=record["titles"])
        plot_image_mosaic(record["images"], [p[:, :4] for p in record["pred"]], [p[:, 5] for p in record["pred"]],
                          [p[:, 4] for p in record["pred"]], names, run_dir / f"val_batch{k}_pred.jpg",
                          titles=record["titles"])
