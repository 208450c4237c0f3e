"""Training augmentations on numpy images: mosaic, random affine/perspective, mixup, HSV jitter, flips, letterbox.

Every function takes a :class:`Sample` (a BGR uint8 image with its boxes as ``x1, y1, x2, y2`` in pixels of that
image, pixel *edges*: a box covering columns 3..6 is ``x1=3, x2=7``) and returns a new one whose boxes follow the
image. Every random draw comes from the ``np.random.Generator`` passed in (never the global ``random`` /
``np.random`` state), so a sample is a pure function of its generator's seed.

Pipeline of :class:`TrainTransform` (the reference's order; defaults in :class:`TrainAugmentConfig`):

1. mosaic (probability ``mosaic``): four images (the sample and three drawn from the dataset) on a grey
   ``2*imgsz`` square canvas around a random centre in ``[imgsz/2, 3*imgsz/2)``; boxes clipped to the canvas. Without
   mosaic the image is letterboxed to the output shape instead.
2. random affine: ``M = T @ S @ R @ P @ C`` (centre, perspective, rotation ``degrees`` and scale ``1 +- scale``,
   shear, translation ``0.5 +- translate`` of the output size), warped to ``imgsz`` (so a mosaic is cropped back to
   ``imgsz``); boxes are the bounding boxes of their warped corners, clipped to the output, and dropped unless
   ``w, h > 2`` px, ``area / (scale^2 * area before) > 0.1`` and aspect ratio ``< 100``.
3. mixup (probability ``mixup``): blend with another sample made by steps 1-2, ratio ~ Beta(32, 32), boxes of both.
4. HSV jitter (gains ``hsv_h, hsv_s, hsv_v``), vertical flip (``flipud``), horizontal flip (``fliplr``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from yolokit.errors import ConfigError

__all__ = ["Sample", "TrainAugmentConfig", "TrainTransform", "affine_matrix", "augment_hsv", "box_candidates",
           "flip_lr", "flip_ud", "letterbox_sample", "mixup", "mosaic4", "random_affine", "warp_boxes"]

PAD_VALUE = 114
_TO_EDGES = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])  # pixel-centre -> pixel-edge coordinates
_TO_CENTRES = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
_PROBABILITIES = ("mosaic", "mixup", "flipud", "fliplr", "hsv_h", "hsv_s", "hsv_v")


@dataclass
class Sample:
    """One image and its ground truth.

    Attributes:
        image: ``(H, W, 3)`` uint8 BGR.
        cls: ``(n,)`` int64 class indices.
        boxes: ``(n, 4)`` float32 ``x1, y1, x2, y2`` in pixels of ``image`` (pixel edges).
    """

    image: np.ndarray
    cls: np.ndarray
    boxes: np.ndarray

    def __len__(self) -> int:
        return int(self.cls.shape[0])

    def subset(self, keep: np.ndarray, image: np.ndarray | None = None, boxes: np.ndarray | None = None) -> Sample:
        """A new sample with the rows ``keep`` (bool mask or indices) of ``boxes`` (default: own) and ``image``."""
        boxes = self.boxes if boxes is None else boxes
        return Sample(self.image if image is None else image, self.cls[keep], boxes[keep].astype(np.float32))


@dataclass(frozen=True)
class TrainAugmentConfig:
    """Augmentation hyperparameters; defaults are the reference's.

    ``close_mosaic`` is read by the trainer: it calls ``dataset.set_mosaic(False)`` (no mosaic, no mixup) for the
    last ``close_mosaic`` epochs.
    """

    mosaic: float = 1.0
    mixup: float = 0.0
    degrees: float = 0.0
    translate: float = 0.1
    scale: float = 0.5
    shear: float = 0.0
    perspective: float = 0.0
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    flipud: float = 0.0
    fliplr: float = 0.5
    close_mosaic: int = 10

    def __post_init__(self) -> None:
        for name in _PROBABILITIES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if not 0.0 <= self.translate <= 1.0:
            raise ConfigError(f"translate must be in [0, 1] (a fraction of the image size), got {self.translate!r}")
        if not 0.0 <= self.scale < 1.0:
            raise ConfigError(f"scale must be in [0, 1) (the scale gain is drawn from 1 +- scale), got {self.scale!r}")
        if not 0.0 <= self.perspective <= 0.01:
            raise ConfigError(f"perspective must be in [0, 0.01] (the reference suggests <= 0.001), got "
                              f"{self.perspective!r}")
        if not (0.0 <= self.degrees <= 180.0 and 0.0 <= self.shear < 90.0):
            raise ConfigError(f"need 0 <= degrees <= 180 and 0 <= shear < 90, got degrees={self.degrees!r} "
                              f"shear={self.shear!r}")
        if self.close_mosaic < 0:
            raise ConfigError(f"close_mosaic must be >= 0 epochs, got {self.close_mosaic!r}")

    @classmethod
    def from_mapping(cls, hyp: Mapping[str, Any] | Any | None = None) -> TrainAugmentConfig:
        """Read the augmentation keys of ``hyp`` (a mapping or an object with those attributes, e.g. a train
        config); other keys are ignored, missing keys keep their defaults. Raises ``ConfigError`` on bad values."""
        if hyp is None:
            return cls()
        values = {}
        for field in dataclasses.fields(cls):
            value = hyp.get(field.name) if isinstance(hyp, Mapping) else getattr(hyp, field.name, None)
            if value is None:
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{field.name} must be a number, got {value!r}") from None
            if not math.isfinite(number) or isinstance(value, bool):
                raise ConfigError(f"{field.name} must be a finite number, got {value!r}")
            if field.name == "close_mosaic" and number != int(number):
                raise ConfigError(f"close_mosaic must be a whole number of epochs, got {value!r}")
            values[field.name] = int(number) if field.name == "close_mosaic" else number
        return cls(**values)


# ------------------------------------------------------------------------------------------------ geometry
def letterbox_sample(sample: Sample, shape_hw: tuple[int, int], scaleup: bool = True,
                     ) -> tuple[Sample, tuple[float, float], tuple[int, int]]:
    """Letterbox (aspect kept, grey padding, centred) to ``shape_hw`` with the predict letterbox; boxes follow.

    Returns ``(sample, (gain_h, gain_w), (left, top))``: the per-axis gain of the resize and the padding offset.
    """
    from yolokit.data.transforms import letterbox  # the one letterbox of yolokit (predict, val and train)

    h, w = sample.image.shape[:2]
    image, (ratio, _), (left, top) = letterbox(sample.image, shape_hw, auto=False, scaleup=scaleup)
    gain_w, gain_h = round(w * ratio) / w, round(h * ratio) / h
    boxes = sample.boxes * np.array([gain_w, gain_h, gain_w, gain_h], np.float32) + np.array(
        [left, top, left, top], np.float32)
    return Sample(image, sample.cls, boxes.astype(np.float32)), (gain_h, gain_w), (left, top)


def _paste(canvas: np.ndarray, image: np.ndarray, x0: int, y0: int) -> tuple[int, int]:
    """Copy ``image`` into ``canvas`` with its top-left corner at ``(x0, y0)``, cropped to the canvas."""
    h, w = image.shape[:2]
    ch, cw = canvas.shape[:2]
    x1, y1, x2, y2 = max(x0, 0), max(y0, 0), min(x0 + w, cw), min(y0 + h, ch)
    if x2 > x1 and y2 > y1:
        canvas[y1:y2, x1:x2] = image[y1 - y0:y2 - y0, x1 - x0:x2 - x0]
    return x0, y0


def mosaic4(samples: list[Sample], imgsz: int, rng: np.random.Generator) -> Sample:
    """Four samples (each at most ``imgsz`` on its long side) around a random centre of a ``2*imgsz`` canvas.

    Sample 0 ends at the centre (its bottom-right corner), 1 starts there to the right, 2 below-left, 3
    below-right. Draws ``xc, yc`` uniformly in ``[imgsz/2, 3*imgsz/2)`` (integers). Boxes are clipped to the canvas
    and zero-area boxes dropped. Returns a ``(2*imgsz, 2*imgsz, 3)`` sample.
    """
    if len(samples) != 4:
        raise ValueError(f"mosaic4 needs 4 samples, got {len(samples)}")
    size = 2 * imgsz
    xc, yc = (int(rng.uniform(imgsz / 2, 3 * imgsz / 2)) for _ in range(2))
    canvas = np.full((size, size, 3), PAD_VALUE, np.uint8)
    boxes, classes = [], []
    for k, sample in enumerate(samples):
        h, w = sample.image.shape[:2]
        x0 = xc - w if k in (0, 2) else xc
        y0 = yc - h if k in (0, 1) else yc
        _paste(canvas, sample.image, x0, y0)
        boxes.append(sample.boxes + np.array([x0, y0, x0, y0], np.float32))
        classes.append(sample.cls)
    all_boxes = np.clip(np.concatenate(boxes).reshape(-1, 4), 0, size)
    keep = (all_boxes[:, 2] > all_boxes[:, 0]) & (all_boxes[:, 3] > all_boxes[:, 1])
    return Sample(canvas, np.concatenate(classes)[keep], all_boxes[keep].astype(np.float32))


def affine_matrix(rng: np.random.Generator, in_hw: tuple[int, int], out_hw: tuple[int, int],
                  cfg: TrainAugmentConfig) -> tuple[np.ndarray, float]:
    """Random ``3x3`` matrix ``T @ S @ R @ P @ C`` mapping input pixel-edge coordinates to the output, and its scale.

    C moves the input centre to the origin; P: perspective terms ``U(-p, p)``; R: rotation ``U(-degrees, degrees)``
    (counter-clockwise, as ``cv2.getRotationMatrix2D``) and scale ``U(1 - scale, 1 + scale)``; S: shear
    ``tan(U(-shear, shear) deg)`` on both axes; T: moves the origin to ``U(0.5 - t, 0.5 + t) * output size``.
    """
    centre = np.eye(3)
    centre[0, 2], centre[1, 2] = -in_hw[1] / 2, -in_hw[0] / 2
    persp = np.eye(3)
    persp[2, 0], persp[2, 1] = rng.uniform(-cfg.perspective, cfg.perspective, 2)
    angle = math.radians(rng.uniform(-cfg.degrees, cfg.degrees))
    scale = float(rng.uniform(1 - cfg.scale, 1 + cfg.scale))
    cos, sin = scale * math.cos(angle), scale * math.sin(angle)
    rotate = np.array([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]])
    shear = np.eye(3)
    shear[0, 1], shear[1, 0] = np.tan(np.radians(rng.uniform(-cfg.shear, cfg.shear, 2)))
    move = np.eye(3)
    move[0, 2] = rng.uniform(0.5 - cfg.translate, 0.5 + cfg.translate) * out_hw[1]
    move[1, 2] = rng.uniform(0.5 - cfg.translate, 0.5 + cfg.translate) * out_hw[0]
    return move @ shear @ rotate @ persp @ centre, scale


def warp_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``(n, 4)`` xyxy boxes -> the xyxy bounding boxes of their 4 corners mapped by the ``3x3`` ``matrix``."""
    if len(boxes) == 0:
        return np.zeros((0, 4), np.float32)
    x1, y1, x2, y2 = boxes.T.astype(np.float64)
    corners = np.stack([np.stack([x1, x2, x1, x2]), np.stack([y1, y1, y2, y2]), np.ones((4, len(boxes)))])  # (3,4,n)
    mapped = np.einsum("ij,jkn->ikn", matrix, corners)
    xy = mapped[:2] / mapped[2:3]  # (2, 4, n); the division is a no-op for affine matrices
    return np.stack([xy[0].min(0), xy[1].min(0), xy[0].max(0), xy[1].max(0)], axis=1).astype(np.float32)


def box_candidates(before: np.ndarray, after: np.ndarray, wh_thr: float = 2.0, ar_thr: float = 100.0,
                   area_thr: float = 0.1, eps: float = 1e-16) -> np.ndarray:
    """Keep mask ``(n,)`` of augmented boxes: ``w, h > wh_thr`` px, ``area_after / area_before > area_thr`` and
    aspect ratio ``max(w/h, h/w) < ar_thr``. ``before`` (already multiplied by the augmentation's scale) and
    ``after`` are ``(n, 4)`` xyxy."""
    w1, h1 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w2, h2 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    aspect = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (aspect < ar_thr)


def random_affine(sample: Sample, rng: np.random.Generator, cfg: TrainAugmentConfig,
                  out_hw: tuple[int, int]) -> Sample:
    """Warp ``sample`` by :func:`affine_matrix` to ``out_hw`` (grey 114 outside), boxes warped, clipped, filtered.

    OpenCV addresses pixel centres, so the image is warped with ``shift(-0.5) @ M @ shift(0.5)``: the boxes (pixel
    edges) mapped by ``M`` then cover exactly the warped pixels.
    """
    import cv2

    matrix, scale = affine_matrix(rng, sample.image.shape[:2], out_hw, cfg)
    image = sample.image
    if image.shape[:2] != tuple(out_hw) or not np.allclose(matrix, np.eye(3), atol=1e-12):
        centres = _TO_CENTRES @ matrix @ _TO_EDGES
        size, border = (int(out_hw[1]), int(out_hw[0])), (PAD_VALUE,) * 3
        if cfg.perspective:
            image = cv2.warpPerspective(image, centres, size, flags=cv2.INTER_LINEAR, borderValue=border)
        else:
            image = cv2.warpAffine(image, centres[:2], size, flags=cv2.INTER_LINEAR, borderValue=border)
    boxes = warp_boxes(sample.boxes, matrix)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, out_hw[1])
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, out_hw[0])
    keep = box_candidates(sample.boxes * scale, boxes)
    return sample.subset(keep, image=image, boxes=boxes)


# ---------------------------------------------------------------------------------------------- photometric
def augment_hsv(image: np.ndarray, rng: np.random.Generator, hgain: float, sgain: float,
                vgain: float) -> np.ndarray:
    """Random hue shift (``+- hgain * 180`` of OpenCV's 0..179 hue), saturation and value gains (``1 +- gain``).

    ``image``: (H, W, 3) uint8 BGR; returns a new image (the input when every gain is 0; then nothing is drawn).
    """
    if not (hgain or sgain or vgain):
        return image
    import cv2

    gains = rng.uniform(-1.0, 1.0, 3) * np.array([hgain, sgain, vgain])
    x = np.arange(256, dtype=np.float64)
    lut = np.stack([(x + gains[0] * 180) % 180, np.clip(x * (1 + gains[1]), 0, 255),
                    np.clip(x * (1 + gains[2]), 0, 255)], axis=-1).astype(np.uint8)[None]  # (1, 256, 3)
    hsv = cv2.LUT(cv2.cvtColor(image, cv2.COLOR_BGR2HSV), lut)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def flip_lr(sample: Sample) -> Sample:
    """Mirror left-right: column ``j`` -> ``W - 1 - j``, box ``x1, x2`` -> ``W - x2, W - x1`` (exact)."""
    import cv2

    width = sample.image.shape[1]
    boxes = sample.boxes.copy()
    boxes[:, [0, 2]] = width - sample.boxes[:, [2, 0]]
    return Sample(cv2.flip(sample.image, 1), sample.cls, boxes)


def flip_ud(sample: Sample) -> Sample:
    """Mirror top-bottom: row ``i`` -> ``H - 1 - i``, box ``y1, y2`` -> ``H - y2, H - y1`` (exact)."""
    import cv2

    height = sample.image.shape[0]
    boxes = sample.boxes.copy()
    boxes[:, [1, 3]] = height - sample.boxes[:, [3, 1]]
    return Sample(cv2.flip(sample.image, 0), sample.cls, boxes)


def mixup(first: Sample, second: Sample, rng: np.random.Generator) -> Sample:
    """Blend two same-size samples, ``r * first + (1 - r) * second`` with ``r ~ Beta(32, 32)``; boxes of both."""
    import cv2

    if first.image.shape != second.image.shape:
        raise ValueError(f"mixup needs two images of one shape, got {first.image.shape} and {second.image.shape}")
    ratio = float(rng.beta(32.0, 32.0))
    image = cv2.addWeighted(first.image, ratio, second.image, 1.0 - ratio, 0.0)
    return Sample(image, np.concatenate([first.cls, second.cls]), np.concatenate([first.boxes, second.boxes]))


# ------------------------------------------------------------------------------------------------- pipeline
class TrainTransform:
    """The training pipeline (module docstring), configured from a mapping of hyperparameters.

    ``transform(index, load, num_images, rng, shape_hw)`` -> :class:`Sample` of shape ``shape_hw`` (default
    ``(imgsz, imgsz)``), where ``load(i) -> Sample`` returns image ``i`` resized to ``imgsz`` on its long side.
    ``use_mosaic`` (set by ``close_mosaic``) switches mosaic and mixup off.
    """

    def __init__(self, hyp: Mapping[str, Any] | Any | None, imgsz: int) -> None:
        self.cfg = hyp if isinstance(hyp, TrainAugmentConfig) else TrainAugmentConfig.from_mapping(hyp)
        self.imgsz = int(imgsz)
        self.use_mosaic = True

    def _base(self, index: int, load: Callable[[int], Sample], num_images: int, rng: np.random.Generator,
              shape_hw: tuple[int, int]) -> Sample:
        """Steps 1-2: mosaic (or letterbox) then random affine."""
        if self.use_mosaic and self.cfg.mosaic > 0 and rng.random() < self.cfg.mosaic:
            others = rng.integers(0, num_images, 3)
            sample = mosaic4([load(index)] + [load(int(j)) for j in others], self.imgsz, rng)
        else:
            sample = letterbox_sample(load(index), shape_hw)[0]
        return random_affine(sample, rng, self.cfg, shape_hw)

    def __call__(self, index: int, load: Callable[[int], Sample], num_images: int, rng: np.random.Generator,
                 shape_hw: tuple[int, int] | None = None) -> Sample:
        shape_hw = (self.imgsz, self.imgsz) if shape_hw is None else (int(shape_hw[0]), int(shape_hw[1]))
        sample = self._base(index, load, num_images, rng, shape_hw)
        if self.use_mosaic and self.cfg.mixup > 0 and rng.random() < self.cfg.mixup:
            other = self._base(int(rng.integers(0, num_images)), load, num_images, rng, shape_hw)
            sample = mixup(sample, other, rng)
        sample.image = augment_hsv(sample.image, rng, self.cfg.hsv_h, self.cfg.hsv_s, self.cfg.hsv_v)
        if self.cfg.flipud and rng.random() < self.cfg.flipud:
            sample = flip_ud(sample)
        if self.cfg.fliplr and rng.random() < self.cfg.fliplr:
            sample = flip_lr(sample)
        return sample

    def __repr__(self) -> str:
        return f"TrainTransform(imgsz={self.imgsz}, use_mosaic={self.use_mosaic}, {self.cfg})"
