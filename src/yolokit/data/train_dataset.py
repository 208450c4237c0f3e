"""``TrainDataset``: the samples and batches the trainer and the losses consume.

``dataset[i]`` is a pure function of ``(seed, epoch, i)`` and the mosaic switch: every random draw of sample ``i``
in epoch ``e`` (the mosaic partners included) comes from ``np.random.default_rng([seed, epoch, i])``. Batches are
therefore identical whatever the number of loader workers, and a resumed run replays them exactly.

Sample ``dict`` (collated by :meth:`TrainDataset.collate_fn` into the batch of ``docs/architecture.md``):
``img`` uint8 ``(3, H, W)`` RGB tensor, ``cls`` float32 ``(n, 1)``, ``bboxes`` float32 ``(n, 4)`` ``cx, cy, w, h``
normalised by ``W, H``, ``im_file`` str, ``ori_shape`` ``(h0, w0)`` of the decoded file, ``resized_shape``
(augmenting: ``(H, W)``; otherwise the size after the long-side resize, as the reference); without augmentation
also ``ratio_pad`` ``((gain_h, gain_w), (left, top))``: original-image pixels -> network-input pixels.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolokit.data.augment import Sample, TrainTransform, letterbox_sample
from yolokit.data.dataset import DataConfig, DetectionDataset, load_data_config
from yolokit.data.sample_state import EpochState
from yolokit.data.transforms import bgr_to_rgb_chw
from yolokit.errors import ConfigError, DatasetError, SourceError

__all__ = ["TrainDataset", "collate", "rect_batch_shapes"]

logger = logging.getLogger(__name__)


def rect_batch_shapes(shapes_hw: np.ndarray, imgsz: int, stride: int, batch_size: int, pad: float) -> np.ndarray:
    """Input shape ``(H, W)`` of each batch of consecutive images (sorted by aspect ratio beforehand).

    Sides in units of ``imgsz``: all landscape (max ``h/w`` < 1) -> ``(max ratio, 1)``, all portrait (min > 1) ->
    ``(1, 1 / min ratio)``, mixed -> ``(1, 1)``; each becomes ``ceil(side * imgsz / stride + pad) * stride``.
    Returns ``(num_batches, 2)`` int64.
    """
    ratios = shapes_hw[:, 0] / shapes_hw[:, 1]
    shapes = []
    for start in range(0, len(ratios), batch_size):
        low, high = ratios[start:start + batch_size].min(), ratios[start:start + batch_size].max()
        sides = (high, 1.0) if high < 1 else (1.0, 1.0 / low) if low > 1 else (1.0, 1.0)
        shapes.append([int(math.ceil(side * imgsz / stride + pad)) * stride for side in sides])
    return np.asarray(shapes, dtype=np.int64).reshape(-1, 2)


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Samples -> the batch dict: ``img`` (B, 3, H, W) uint8; ``cls`` (N, 1), ``bboxes`` (N, 4), ``batch_idx`` (N,)
    float32 over all boxes; ``im_file``, ``ori_shape``, ``resized_shape`` (and ``ratio_pad``) lists of length B."""
    # numpy copies: torch's stack/cat run on its intra-op thread pool, which costs more than the copy itself when
    # the main process loads the data (workers=0) on a busy machine
    counts = [len(s["cls"]) for s in samples]
    batch: dict[str, Any] = {
        "img": torch.from_numpy(np.stack([s["img"].numpy() for s in samples])),
        "cls": torch.from_numpy(np.concatenate([s["cls"].numpy() for s in samples]).reshape(-1, 1)),
        "bboxes": torch.from_numpy(np.concatenate([s["bboxes"].numpy() for s in samples]).reshape(-1, 4)),
        "batch_idx": torch.from_numpy(np.repeat(np.arange(len(samples), dtype=np.float32), counts)),
    }
    for key in ("im_file", "ori_shape", "resized_shape", "ratio_pad"):
        if key in samples[0]:
            batch[key] = [s[key] for s in samples]
    return batch


def _check_sizes(imgsz: Any, stride: Any, batch_size: Any) -> None:
    for name, value in (("imgsz", imgsz), ("stride", stride), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if imgsz % stride:
        low, high = imgsz // stride * stride, -(-imgsz // stride) * stride
        raise ConfigError(f"imgsz={imgsz} is not a multiple of the model stride {stride}; use {high}"
                          f"{f' or {low}' if low else ''}")


class TrainDataset(EpochState, torch.utils.data.Dataset):
    """Augmented (``augment=True``) or letterboxed (validation) samples of one split of a dataset.

    Args:
        data: a :class:`DataConfig` or the path of a dataset YAML.
        split: ``"train"``, ``"val"`` or ``"test"``.
        imgsz: output size (a multiple of ``stride``); images are first resized to it on their long side.
        augment: the :class:`~yolokit.data.augment.TrainTransform` pipeline; False letterboxes without up-scaling.
        hyp: augmentation hyperparameters (mapping or object with the keys of ``TrainAugmentConfig``).
        rect: rectangular batches of aspect-sorted images (the order of ``labels`` changes; no mosaic; use a
            loader with ``shuffle=False`` and ``batch=batch_size``); ``batch_shapes`` holds each batch's ``(H, W)``.
        stride: the model's max stride.
        cache: read/write the label cache (``labels/<split>.yolokit.cache``).
        batch_size: batch size of the rect batches.
        seed: the augmentation seed (the loader sets it: ``build_dataloader(..., seed=)``).
        cache_images: decode and resize every image once, here, and keep them in RAM (read-only arrays that forked
            loader workers share): no JPEG decoding during training, at ``~3 * imgsz^2`` bytes per image.
        progress: show the label-scan progress bar.

    Unreadable label rows/files and images whose header cannot be read are reported by the scan and skipped. An image
    that fails to decode later is replaced by the next readable one (``i + 1``, ...; deterministic) with a warning
    naming it. ``DatasetError`` (one line) when no image is usable, raised here, before any epoch.
    """

    def __init__(self, data: DataConfig | str | Path, split: str, imgsz: int = 640, augment: bool = True,
                 hyp: Mapping[str, Any] | Any | None = None, rect: bool = False, stride: int = 32,
                 cache: bool = True, *, batch_size: int = 16, seed: int = 0, cache_images: bool = False,
                 progress: bool = True) -> None:
        _check_sizes(imgsz, stride, batch_size)
        data = data if isinstance(data, DataConfig) else load_data_config(data)
        base = DetectionDataset(data, split, cache=cache, progress=progress)
        self.data, self.split, self.names, self.nc = data, split, base.names, base.nc
        self.report = base.report
        self.labels = list(base.labels)
        self.imgsz, self.stride, self.augment, self.rect = int(imgsz), int(stride), bool(augment), bool(rect)
        self.batch_size = int(batch_size)
        self.transform = TrainTransform(hyp, self.imgsz)
        self.transform.use_mosaic = not self.rect
        self.seed, self.epoch = int(seed), 0
        self.batch_shapes: np.ndarray | None = None
        if self.rect:
            shapes = np.array([item.shape for item in self.labels], dtype=np.float64).reshape(-1, 2)
            order = np.argsort(shapes[:, 0] / shapes[:, 1], kind="stable")
            self.labels = [self.labels[i] for i in order]
            self.batch_shapes = rect_batch_shapes(shapes[order], self.imgsz, self.stride, self.batch_size,
                                                  pad=0.0 if self.augment else 0.5)
        self._unreadable: set[int] = set()
        self._cache: list[tuple[np.ndarray, tuple[int, int]] | None] | None = None
        if cache_images:
            self._fill_cache(progress)
        self._decode(0)  # fails now, before any epoch, when no image decodes

    # ------------------------------------------------------------------------------------------- state
    def set_epoch(self, epoch: int) -> None:
        """The epoch whose augmentation draws ``dataset[i]`` makes (the loader calls this every epoch)."""
        self.epoch = int(epoch)

    def set_seed(self, seed: int) -> None:
        self.seed = int(seed)

    def set_mosaic(self, enabled: bool) -> None:
        """Mosaic and mixup on or off (``close_mosaic``); always off for rect datasets."""
        self.transform.use_mosaic = bool(enabled) and not self.rect

    @property
    def mosaic(self) -> bool:
        return self.transform.use_mosaic

    @property
    def im_files(self) -> list[str]:
        return [item.im_file for item in self.labels]

    def __len__(self) -> int:
        return len(self.labels)

    # ------------------------------------------------------------------------------------------ loading
    def _read(self, index: int) -> tuple[np.ndarray, tuple[int, int]] | SourceError:
        """Image ``index`` resized (:meth:`_resize`) with its original ``(h0, w0)``, or the decoding error."""
        from yolokit.data.sources import read_image

        try:
            image = read_image(self.labels[index].im_file)
        except SourceError as error:
            return error
        return self._resize(image), (int(image.shape[0]), int(image.shape[1]))

    def _fill_cache(self, progress: bool) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from yolokit.utils.progress import progress as progress_bar

        count, workers = len(self.labels), max(1, min(8, os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=workers) as pool:  # OpenCV decodes without the GIL
            results = list(progress_bar(pool.map(self._read, range(count)), desc=f"Caching {self.split} images",
                                        total=count, enabled=progress, unit="img"))
        self._cache = []
        for index, result in enumerate(results):
            if isinstance(result, SourceError):
                self._unreadable.add(index)
                logger.warning(f"{result}; another image will be used in its place")
                self._cache.append(None)
            else:
                result[0].flags.writeable = False  # shared with the workers: never modified in place
                self._cache.append(result)
        size = sum(item[0].nbytes for item in self._cache if item is not None)
        logger.info(f"Cached {count - len(self._unreadable)} {self.split} images in RAM ({size / 1e6:.0f} MB)")

    def _decode(self, index: int) -> tuple[np.ndarray, tuple[int, int], int]:
        """``(resized image BGR, original (h0, w0), index used)`` of image ``index``, or of the next one that
        decodes (``index + 1``, ...) with a warning naming the unreadable file."""
        count = len(self.labels)
        for step in range(count):
            used = (index + step) % count
            if used in self._unreadable:
                continue
            result = self._cache[used] if self._cache is not None else self._read(used)
            if not isinstance(result, SourceError):
                return result[0], result[1], used
            self._unreadable.add(used)
            logger.warning(f"{result}; using another image in its place (training goes on)")
        raise DatasetError(f"none of the {count} images of split {self.split!r} of "
                           f"{self.data.yaml_path or self.data.root} can be decoded; fix or replace the images")

    def _resize(self, image: np.ndarray) -> np.ndarray:
        """Long side to ``imgsz`` (aspect kept; sides ``min(ceil(side * r), imgsz)``); INTER_AREA only to shrink
        without augmentation."""
        import cv2

        h0, w0 = image.shape[:2]
        ratio = self.imgsz / max(h0, w0)
        if ratio == 1:
            return image
        size = (min(math.ceil(w0 * ratio), self.imgsz), min(math.ceil(h0 * ratio), self.imgsz))
        interpolation = cv2.INTER_LINEAR if (self.augment or ratio > 1) else cv2.INTER_AREA
        return cv2.resize(image, size, interpolation=interpolation)

    def load(self, index: int) -> tuple[Sample, int, tuple[int, int]]:
        """Image ``index`` resized to ``imgsz`` on its long side with boxes in its pixels ->
        ``(sample, index actually used, original (h0, w0))``."""
        image, ori_hw, used = self._decode(index)
        h, w = image.shape[:2]
        item = self.labels[used]
        centre, size = item.bboxes[:, :2], item.bboxes[:, 2:]
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1) * np.array([w, h, w, h], np.float32)
        return Sample(image, item.cls.astype(np.int64), boxes.astype(np.float32).reshape(-1, 4)), used, ori_hw

    def shape_of(self, index: int) -> tuple[int, int]:
        """Output ``(H, W)`` of sample ``index``: its rect batch's shape, else ``(imgsz, imgsz)``."""
        if self.batch_shapes is None:
            return self.imgsz, self.imgsz
        h, w = self.batch_shapes[index // self.batch_size]
        return int(h), int(w)

    # ------------------------------------------------------------------------------------------ samples
    def sample_state(self) -> dict[str, Any]:
        return {**super().sample_state(), "mosaic": self.mosaic}

    def load_sample_state(self, state: dict[str, Any]) -> None:
        super().load_sample_state(state)
        self.set_mosaic(state["mosaic"])

    def __getitem__(self, index: int | tuple[int, dict[str, Any]]) -> dict[str, Any]:
        index = self.resolve_key(index)
        if not 0 <= index < len(self):
            raise IndexError(f"sample index {index} out of range for {len(self)} images")
        primary, used, ori_hw = self.load(index)
        if not self.augment:
            resized_hw = primary.image.shape[:2]
            sample, (gain_h, gain_w), pad = letterbox_sample(primary, self.shape_of(index), scaleup=False)
            ratio_pad = ((gain_h * resized_hw[0] / ori_hw[0], gain_w * resized_hw[1] / ori_hw[1]), pad)
            return self._format(sample, used, ori_hw, resized_hw, ratio_pad)
        loaded = {index: primary}

        def load(i: int) -> Sample:
            if i not in loaded:
                loaded[i] = self.load(i)[0]
            return loaded[i]

        rng = np.random.default_rng([self.seed, self.epoch, index])
        sample = self.transform(index, load, len(self), rng, self.shape_of(index))
        return self._format(sample, used, ori_hw, sample.image.shape[:2])

    def _format(self, sample: Sample, used: int, ori_hw: tuple[int, int], resized_hw: tuple[int, int],
                ratio_pad: tuple | None = None) -> dict[str, Any]:
        h, w = sample.image.shape[:2]
        boxes = sample.boxes.reshape(-1, 4)
        cxcywh = np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], axis=1)
        out = {
            "img": torch.from_numpy(bgr_to_rgb_chw([sample.image])[0]),
            "cls": torch.from_numpy(sample.cls.astype(np.float32).reshape(-1, 1)),
            "bboxes": torch.from_numpy((cxcywh / np.array([w, h, w, h], np.float32)).astype(np.float32)),
            "im_file": self.labels[used].im_file,
            "ori_shape": ori_hw,
            "resized_shape": (int(resized_hw[0]), int(resized_hw[1])),
        }
        if ratio_pad is not None:
            out["ratio_pad"] = ratio_pad
        return out

    collate_fn = staticmethod(collate)

    def __repr__(self) -> str:
        return (f"TrainDataset(split={self.split!r}, images={len(self)}, imgsz={self.imgsz}, augment={self.augment}, "
                f"rect={self.rect}, mosaic={self.mosaic}, epoch={self.epoch})")
