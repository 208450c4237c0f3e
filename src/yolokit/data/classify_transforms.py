"""Classification transforms on ``(H, W, 3)`` uint8 BGR images (the reference's recipe, own implementation).

Evaluation (:func:`eval_crop`): resize the short side to ``imgsz`` with Pillow's bilinear filter (what the
reference's torchvision ``Resize`` runs on its PIL images, antialiased, so pixels match it), then take the centre
``imgsz x imgsz`` crop (offsets ``round((H - h) / 2)``, ``round((W - w) / 2)``). A rectangular ``(h, w)`` size resizes
to exactly ``(h, w)`` first, as the reference does.

Training (:class:`ClassifyTrainTransform`, every draw from the sample's own generator):

1. random resized crop: a window of ``U(1 - scale, 1)`` of the image area and aspect ratio ``exp(U(log 3/4,
   log 4/3))`` (10 tries, else the centre crop clamped to that ratio range), resized to ``imgsz x imgsz``;
2. left-right flip with probability ``fliplr``, top-bottom with ``flipud``;
3. HSV gains (``hsv_h``, ``hsv_s``, ``hsv_v``: :func:`yolokit.data.augment.augment_hsv`);
4. random erasing with probability ``erasing``: a rectangle of ``U(0.02, 0.33)`` of the area, aspect
   ``exp(U(log 0.3, log 3.3))``, set to 0 (black), as the reference's ``RandomErasing(value=0)``.

The reference's default ``auto_augment=randaugment`` is not implemented; HSV jitter takes its place (the reference
applies its colour jitter only without auto-augment).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from yolokit.errors import ConfigError

__all__ = ["ClassifyAugmentConfig", "ClassifyTrainTransform", "eval_crop", "random_resized_crop_box", "erase_box"]


def _size_hw(imgsz: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(imgsz, (int, np.integer)):
        return int(imgsz), int(imgsz)
    sides = [int(s) for s in imgsz]
    return (sides[0], sides[0]) if len(sides) == 1 else (sides[0], sides[-1])


def _resized_short_side(h: int, w: int, size: int) -> tuple[int, int]:
    """``(h', w')`` with the short side ``size`` and the long side ``int(size * long / short)`` (torchvision's rule)."""
    if h <= w:
        return size, int(size * w / h)
    return int(size * h / w), size


_PIL_FILTERS = {"nearest": "NEAREST", "nearest-exact": "NEAREST", "bilinear": "BILINEAR", "bicubic": "BICUBIC",
                "box": "BOX", "hamming": "HAMMING", "lanczos": "LANCZOS"}


def eval_crop(image_bgr: np.ndarray, imgsz: int | tuple[int, int], resize: int | None = None,
              interpolation: str = "bilinear", square_crop: bool = False) -> np.ndarray:
    """Resize (short side to ``resize``, default the crop side; Pillow ``interpolation``) then centre-crop ``imgsz``
    -> ``(h, w, 3)`` uint8 **RGB** (see the module docstring).

    ``square_crop``: the reference 8.0.x transform instead: the centre square of the short side, resized to
    ``imgsz`` with OpenCV's bilinear filter.
    """
    th, tw = _size_hw(imgsz)
    h, w = image_bgr.shape[:2]
    if square_crop:
        import cv2

        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        square = image_bgr[top:top + side, left:left + side]
        return np.ascontiguousarray(cv2.resize(square, (tw, th), interpolation=cv2.INTER_LINEAR)[..., ::-1])
    from PIL import Image

    nh, nw = (th, tw) if th != tw else _resized_short_side(h, w, resize or th)
    rgb = np.ascontiguousarray(image_bgr[..., ::-1])
    if (nh, nw) != (h, w):
        resample = getattr(Image, _PIL_FILTERS.get(interpolation, "BILINEAR"))
        rgb = np.asarray(Image.fromarray(rgb).resize((nw, nh), resample))
    top, left = int(round((nh - th) / 2.0)), int(round((nw - tw) / 2.0))
    return np.ascontiguousarray(rgb[top:top + th, left:left + tw])


def random_resized_crop_box(rng: np.random.Generator, h: int, w: int, scale: tuple[float, float],
                            ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of a random crop (step 1 of the module docstring)."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    in_ratio = w / h  # fallback: the whole image, clamped to the ratio range, centred
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def erase_box(rng: np.random.Generator, h: int, w: int, scale: tuple[float, float] = (0.02, 0.33),
              ratio: tuple[float, float] = (0.3, 3.3)) -> tuple[int, int, int, int] | None:
    """``(top, left, height, width)`` of a random erasing rectangle, or None when 10 tries do not fit."""
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = h * w * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        eh, ew = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if eh < h and ew < w:
            return int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1)), eh, ew
    return None


@dataclass(frozen=True)
class ClassifyAugmentConfig:
    """Classification augmentation settings (the reference's defaults; ``scale`` gives the crop area ``U(1 - scale,
    1)``)."""

    scale: float = 0.5
    fliplr: float = 0.5
    flipud: float = 0.0
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    erasing: float = 0.4

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{f.name} must be a number in [0, 1], got {value!r}")
        if self.scale >= 1.0:
            raise ConfigError(f"scale must be below 1 (the crop keeps U(1 - scale, 1) of the area), got {self.scale}")

    @classmethod
    def from_mapping(cls, hyp: Mapping[str, Any] | Any | None = None) -> ClassifyAugmentConfig:
        """The keys above from a mapping or an object (e.g. a train config); missing keys keep their defaults."""
        if hyp is None:
            return cls()
        values = {}
        for f in fields(cls):
            value = hyp.get(f.name) if isinstance(hyp, Mapping) else getattr(hyp, f.name, None)
            if value is not None:
                values[f.name] = value
        return cls(**values)


class ClassifyTrainTransform:
    """``transform(image_bgr, rng) -> (imgsz, imgsz, 3)`` uint8 RGB, the training steps of the module docstring."""

    def __init__(self, imgsz: int, hyp: Mapping[str, Any] | Any | None = None) -> None:
        self.imgsz = int(imgsz)
        self.cfg = hyp if isinstance(hyp, ClassifyAugmentConfig) else ClassifyAugmentConfig.from_mapping(hyp)

    def __call__(self, image_bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import cv2

        from yolokit.data.augment import augment_hsv

        cfg, size = self.cfg, self.imgsz
        top, left, ch, cw = random_resized_crop_box(rng, *image_bgr.shape[:2], scale=(1.0 - cfg.scale, 1.0))
        crop = image_bgr[top:top + ch, left:left + cw]
        interpolation = cv2.INTER_AREA if ch * cw > size * size else cv2.INTER_LINEAR
        image = cv2.resize(crop, (size, size), interpolation=interpolation)
        if cfg.fliplr and rng.random() < cfg.fliplr:
            image = image[:, ::-1]
        if cfg.flipud and rng.random() < cfg.flipud:
            image = image[::-1]
        image = augment_hsv(np.ascontiguousarray(image), rng, cfg.hsv_h, cfg.hsv_s, cfg.hsv_v)
        image = np.ascontiguousarray(image[..., ::-1])  # RGB
        if cfg.erasing and rng.random() < cfg.erasing:
            box = erase_box(rng, size, size)
            if box is not None:
                image[box[0]:box[0] + box[2], box[1]:box[1] + box[3]] = 0
        return image

    def __repr__(self) -> str:
        return f"ClassifyTrainTransform(imgsz={self.imgsz}, {self.cfg})"
