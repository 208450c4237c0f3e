"""The predict loop: source -> letterbox batch -> backend -> NMS (or end-to-end filter) -> scaled ``Results``.

``Predictor(backend, config).stream(source)`` is a generator that decodes, infers and yields one ``Results`` at a
time (constant memory for long videos and big folders); ``predict(source)`` collects them in a list. Outputs
(annotated images/videos, label files) are written only on the main process, into a run directory
``<project>/<name>{,2,3,...}`` created on the first write.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from yolokit.config import PredictConfig
from yolokit.ops.boxes import scale_boxes
from yolokit.ops.nms import filter_end2end, non_max_suppression
from yolokit.predict.preprocess import check_imgsz, preprocess
from yolokit.predict.results import Results
from yolokit.utils.dist import is_main_process
from yolokit.utils.io import atomic_write_bytes, increment_dir
from yolokit.utils.progress import progress
from yolokit.utils.threads import torch_threads

__all__ = ["Predictor"]

logger = logging.getLogger(__name__)


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class Predictor:
    """Runs a backend over a source with the settings of a :class:`~yolokit.config.PredictConfig`.

    Args:
        backend: any backend (``TorchBackend``, ONNX Runtime, ...): ``backend(batch) -> Tensor`` plus ``stride``,
            ``names``, ``dynamic``, ``end2end``, ``set_nms_free``.
        config: thresholds (``conf``, ``iou``, ``max_det``, ``classes``, ``agnostic_nms``), head choice (``nms``,
            ``end2end``), ``imgsz``, ``batch``, ``vid_stride`` and output options (``save``, ``save_txt``, ...).

    After a run, ``save_dir`` is the run directory (None if nothing was saved) and ``speed`` the mean
    milliseconds per image for ``preprocess``, ``inference`` and ``postprocess``.
    """

    def __init__(self, backend: Any, config: PredictConfig | None = None) -> None:
        self.backend = backend
        self.config = config or PredictConfig()
        if self.config.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.config.batch}: pass e.g. batch=1")
        self.save_dir: Path | None = None
        self.speed: dict[str, float] = {}

    @property
    def nms_free(self) -> bool:
        """True when the end-to-end head is requested (``nms=False`` or the deprecated ``end2end=True``)."""
        return (not self.config.nms) or self.config.end2end is True

    def predict(self, source: Any) -> list[Results]:
        """All results of ``source`` as a list (see :meth:`stream`)."""
        return list(self.stream(source))

    def stream(self, source: Any) -> Iterator[Results]:
        """Yield one :class:`Results` per image or video frame of ``source``, in order."""
        from yolokit.data.sources import Source, open_source

        cfg = self.config
        self.backend.set_nms_free(self.nms_free)
        imgsz = check_imgsz(cfg.imgsz, self.backend.stride)
        src = open_source(source, vid_stride=cfg.vid_stride)
        owns_source = not isinstance(source, Source)
        outputs = _RunOutputs(cfg) if (cfg.save or cfg.save_txt or cfg.save_crop) and is_main_process() else None
        if outputs is not None:
            outputs._dir()  # created and checked writable before any image is predicted
        totals, seen, shape = np.zeros(3), 0, None
        log = cfg.verbose and is_main_process()
        items = progress(src, desc="predict", total=src.count, enabled=log and not src.single, unit="img")
        numbering = _Numbering(src)
        try:
            for batch in _batched(items, cfg.batch):
                results, shape, times = self._run_batch(batch, imgsz)
                totals += times
                for item, result in zip(batch, results, strict=True):
                    seen += 1
                    if outputs is not None:
                        result.save_dir = str(outputs.write(item, result))
                    if log:
                        logger.info("%s %s: %dx%d %s%.1fms", numbering.prefix(item), item.path, shape[2], shape[3],
                                    result.verbose(), result.speed["inference"])
                    yield result
        finally:
            if outputs is not None:
                outputs.close()
            if owns_source:
                src.close()
        self._finish(totals, seen, shape, outputs, log)

    def _run_batch(self, items: list[Any], imgsz: tuple[int, int]) -> tuple[list[Results], tuple[int, ...], Any]:
        """Preprocess, infer and postprocess one batch; per-image speeds are the batch times divided by its size."""
        cfg = self.config
        start = time.perf_counter()
        batch = preprocess([item.image for item in items], imgsz, self.backend.stride, auto=self.backend.dynamic)
        preprocessed = time.perf_counter()
        raw = self.backend(batch)
        inferred = time.perf_counter()
        # A backend that runs outside torch says how many torch threads its post-processing should use
        # (``host_threads``; ONNX Runtime: 1, see its docstring); torch backends leave torch as it is (None).
        with torch_threads(getattr(self.backend, "host_threads", None)):
            if self.nms_free:
                detections = filter_end2end(raw, cfg.conf, cfg.classes, cfg.max_det)
            else:
                detections = non_max_suppression(raw, cfg.conf, cfg.iou, cfg.classes, cfg.agnostic_nms, cfg.max_det)
            names = self.backend.names
            results = [
                Results(item.image, item.path, names, scale_boxes(det.cpu(), batch.shape[2:], item.image.shape[:2]))
                for item, det in zip(items, detections, strict=True)
            ]
        done = time.perf_counter()
        times = np.array([preprocessed - start, inferred - preprocessed, done - inferred]) * 1e3 / len(items)
        for result in results:
            result.speed = dict(zip(("preprocess", "inference", "postprocess"), times.tolist(), strict=True))
        return results, tuple(batch.shape), times * len(items)

    def _finish(self, totals: np.ndarray, seen: int, shape: tuple[int, ...] | None, outputs: _RunOutputs | None,
                log: bool) -> None:
        if seen:
            per_image = totals / seen
            self.speed = dict(zip(("preprocess", "inference", "postprocess"), per_image.tolist(), strict=True))
            if log:
                logger.info("Speed: %.1fms preprocess, %.1fms inference, %.1fms postprocess per image at shape %s",
                            *per_image.tolist(), (min(self.config.batch, seen), *shape[1:]))
        if outputs is not None and outputs.directory is not None:
            self.save_dir = outputs.directory
            if log:
                if self.config.save_txt:
                    logger.info("%d label files saved to %s", outputs.label_files, outputs.directory / "labels")
                logger.info("Results saved to %s", outputs.directory)


class _Numbering:
    """``image 3/10`` / ``video 1/2 (frame 7/300)`` prefixes of the per-image log line."""

    def __init__(self, source: Any) -> None:
        self.count = source.count
        self.inputs = getattr(source, "num_inputs", None)
        self.videos = 0
        self.last_video: str | None = None

    def prefix(self, item: Any) -> str:
        if item.frame is None:
            return f"image {item.index + 1}/{self.count}" if self.count else f"image {item.index + 1}"
        if item.path != self.last_video or item.frame == 1:
            self.videos += 1
            self.last_video = item.path
        total = f"/{self.inputs}" if self.inputs else ""
        frames = f"/{item.frames}" if item.frames else ""
        return f"video {self.videos}{total} (frame {item.frame}{frames})"


def _output_name(path: str) -> str:
    """File name for saved outputs: the last path component without a URL query (``image0.jpg`` if empty)."""
    name = Path(path.split("?", 1)[0].split("#", 1)[0]).name
    return name or "image0.jpg"


class _RunOutputs:
    """Writes annotated images, videos and label files into the run directory (created on the first write)."""

    def __init__(self, config: PredictConfig) -> None:
        self.config = config
        self.directory: Path | None = None
        self.label_files = 0
        self._video_key: str | None = None
        self._writer: Any = None

    def _dir(self) -> Path:
        if self.directory is None:
            self.directory = increment_dir(Path(self.config.project) / self.config.name, exist_ok=self.config.exist_ok)
        return self.directory

    def write(self, item: Any, result: Results) -> Path:
        cfg = self.config
        directory = self._dir()
        stem = Path(_output_name(item.path)).stem
        if cfg.save_txt and len(result):
            label_name = f"{stem}_{item.frame}.txt" if item.frame is not None else f"{stem}.txt"
            result.save_txt(directory / "labels" / label_name, save_conf=cfg.save_conf)
            self.label_files += 1
        if cfg.save_crop and len(result):
            result.save_crop(directory / "crops", f"{stem}_{item.frame}" if item.frame is not None else stem)
        if cfg.save:
            plotted = result.plot(conf=cfg.show_conf, labels=cfg.show_labels, line_width=cfg.line_width)
            if item.frame is not None:
                self._write_frame(item, plotted, directory / stem)
            else:
                _write_image(directory / _output_name(item.path), plotted)
        return directory

    def _write_frame(self, item: Any, frame: np.ndarray, base: Path) -> None:
        if item.path != self._video_key or item.frame == 1:
            self.close()
            self._writer = _open_video_writer(base, item.path, frame.shape[:2], self.config.vid_stride)
            self._video_key = item.path
        self._writer.write(frame)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            self._video_key = None


def _write_image(path: Path, image: np.ndarray) -> None:
    import cv2

    suffix = path.suffix.lower()
    try:
        ok, encoded = cv2.imencode(suffix, image) if suffix else (False, None)
    except cv2.error:
        ok = False
    if not ok:
        path = path.with_suffix(".jpg")
        ok, encoded = cv2.imencode(".jpg", image)
    atomic_write_bytes(path, encoded.tobytes())


def _open_video_writer(base: Path, source_path: str, shape_hw: tuple[int, int], vid_stride: int) -> Any:
    """An open ``cv2.VideoWriter`` at ``base.mp4`` (mp4v), or ``base.avi`` (MJPG) if mp4 is unavailable.

    The frame rate is the source's (read from the file, 30 if unknown) divided by ``vid_stride`` so the saved video
    plays at real speed.
    """
    import cv2

    fps = 30.0
    if Path(source_path).is_file():
        capture = cv2.VideoCapture(source_path)
        fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
        capture.release()
    fps = max(fps / vid_stride, 1.0)
    size = (int(shape_hw[1]), int(shape_hw[0]))
    for suffix, codec in ((".mp4", "mp4v"), (".avi", "MJPG")):
        writer = cv2.VideoWriter(str(base.with_suffix(suffix)), cv2.VideoWriter_fourcc(*codec), fps, size)
        if writer.isOpened():
            return writer
        writer.release()
    raise OSError(f"cannot write video {base}.mp4/.avi: OpenCV has no mp4v or MJPG encoder; save=False or install "
                  "an OpenCV build with video support")
