"""The classification predict loop: source -> short-side resize + centre crop -> backend -> ``ClassifyResults``.

``ClassifyPredictor(backend, config)`` has the detection predictor's surface and outputs (``predict``, ``stream``,
``save`` writes the image with its top-5, ``save_txt`` the top-5 lines, ``save_crop`` sorts the images into
``crops/<top-1 class>/``); only the batch step differs. Preprocessing is :func:`classify_preprocess`, shared with
validation: the reference's eval transform (:func:`yolokit.data.classify_transforms.eval_crop`), then the
normalisation the weights record (``metadata["classify_transforms"]``: the reference's default mean 0, std 1 is the
identity).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from yolokit.errors import ConfigError
from yolokit.predict.classify_results import ClassifyResults
from yolokit.predict.predictor import Predictor

__all__ = ["ClassifyPredictor", "classify_preprocess", "crop_options", "normalize_batch", "transform_params"]


def transform_params(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The recorded eval transform of a classifier: ``{"resize", "crop", "mean", "std"}`` (missing keys absent)."""
    recorded = (metadata or {}).get("classify_transforms")
    return dict(recorded) if isinstance(recorded, Mapping) else {}


def _resize_for(params: Mapping[str, Any], imgsz: tuple[int, int]) -> int | None:
    """The recorded short-side resize, when the recorded crop is the size asked for (else None: resize = crop)."""
    crop, resize = params.get("crop"), params.get("resize")
    crop_hw = (crop, crop) if isinstance(crop, int) else tuple(crop) if isinstance(crop, (list, tuple)) else None
    if isinstance(resize, int) and crop_hw is not None and tuple(crop_hw[:2]) == tuple(imgsz) and imgsz[0] == imgsz[1]:
        return resize
    return None


def normalize_batch(batch: torch.Tensor, params: Mapping[str, Any]) -> torch.Tensor:
    """``(batch - mean) / std`` per channel when the weights record a non-identity normalisation; else ``batch``."""
    mean, std = params.get("mean"), params.get("std")
    if mean is None or std is None or (list(mean) == [0.0] * 3 and list(std) == [1.0] * 3):
        return batch
    mean_t = torch.tensor(mean, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
    return (batch - mean_t) / std_t


def classify_preprocess(images_bgr: Sequence[np.ndarray], imgsz: int | Sequence[int],
                        metadata: Mapping[str, Any] | None = None) -> torch.Tensor:
    """``(h, w, 3)`` BGR uint8 images -> ``(B, 3, H, W)`` float32 RGB in [0, 1] (then the recorded normalisation)."""
    from yolokit.data.classify_transforms import eval_crop

    hw = (int(imgsz), int(imgsz)) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[-1]))
    options = crop_options(metadata, hw)
    crops = np.stack([eval_crop(image, hw if hw[0] != hw[1] else hw[0], **options) for image in images_bgr])
    batch = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div_(255.0)
    return normalize_batch(batch, transform_params(metadata))


def crop_options(metadata: Mapping[str, Any] | None, imgsz_hw: tuple[int, int]) -> dict[str, Any]:
    """Keyword arguments of :func:`~yolokit.data.classify_transforms.eval_crop` the weights' recorded transform
    asks for at this crop size (``resize``, ``interpolation``, ``square_crop``)."""
    params = transform_params(metadata)
    return {"resize": _resize_for(params, imgsz_hw), "interpolation": str(params.get("interpolation", "bilinear")),
            "square_crop": bool(params.get("square_crop", False))}


class ClassifyPredictor(Predictor):
    """Runs a classifier backend over a source (settings: :class:`~yolokit.config.PredictConfig`; ``imgsz`` is the
    crop side, ``batch``, ``save``, ``save_txt``, ``save_crop``, ``show_conf``, ``show_labels``, ``verbose``)."""

    @property
    def nms_free(self) -> bool:
        return False  # a classifier has no NMS; nms=False is refused by the model

    def _run_batch(self, items: list[Any], imgsz: tuple[int, int]) -> tuple[list[ClassifyResults], tuple[int, ...],
                                                                              Any]:
        """Preprocess, infer and wrap one batch; per-image speeds are the batch times divided by its size."""
        if not self.config.nms or self.config.end2end is True:
            raise ConfigError("nms=False (NMS-free head) is a detection setting; a classifier has no NMS: drop it")
        start = time.perf_counter()
        batch = classify_preprocess([item.image for item in items], imgsz, self.backend.metadata)
        preprocessed = time.perf_counter()
        probs = self.backend(batch).float().cpu()  # (B, nc)
        inferred = time.perf_counter()
        names = self.backend.names
        results = [ClassifyResults(item.image, item.path, names, row) for item, row in zip(items, probs, strict=True)]
        done = time.perf_counter()
        times = np.array([preprocessed - start, inferred - preprocessed, done - inferred]) * 1e3 / len(items)
        for result in results:
            result.speed = dict(zip(("preprocess", "inference", "postprocess"), times.tolist(), strict=True))
        return results, tuple(batch.shape), times * len(items)
