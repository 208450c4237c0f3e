"""Built-in synthetic classification dataset: one flat-coloured shape per image, the class is the shape.

``make_synthetic_classification(out)`` writes ``out/{train,val}/<shape>/00000.jpg`` and, last and atomically,
``out/data.yaml`` (a half-made dataset never looks complete). Classes are balanced (image ``i`` shows class
``i % nc``); each image comes from its own generator seeded by ``(seed, split, index)``, so the same arguments give
byte-identical files. The shapes and backgrounds are those of the detection set (:mod:`yolokit.data.synth`): a shape
of 40-80 % of the image side, aspect up to 1.5, half of them rotated by up to 20 degrees, in a colour contrasting
with its noise or gradient background.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from yolokit.data.synth import SHAPES, _background, _contrasting_colour, draw_shape, shape_polygon
from yolokit.errors import ConfigError, DatasetError
from yolokit.utils.dist import is_main_process
from yolokit.utils.io import atomic_write_text, check_output_dir

__all__ = ["make_synthetic_classification", "render_class_image", "CLASSIFY_SYNTH_VERSION"]

logger = logging.getLogger(__name__)
CLASSIFY_SYNTH_VERSION = 2
BACKGROUNDS = ("noise", "gradient")  # the detection set's stripes look like shape edges: left out here
MARKER = ".yolokit-synth-classify"
_SPLITS = ("train", "val")


def render_class_image(rng: np.random.Generator, imgsz: int, kind: str, noise_tile: np.ndarray) -> np.ndarray:
    """One ``(imgsz, imgsz, 3)`` uint8 BGR image showing one ``kind`` shape (redrawn until it is visible)."""
    for _ in range(20):
        image = _background(rng, imgsz, noise_tile, BACKGROUNDS)
        side = imgsz * rng.uniform(0.4, 0.8)
        aspect = np.exp(rng.uniform(-np.log(1.5), np.log(1.5))) if kind != "star" else 1.0
        w, h = side * np.sqrt(aspect), side / np.sqrt(aspect)
        cx, cy = rng.uniform(0.4 * w, imgsz - 0.4 * w), rng.uniform(0.4 * h, imgsz - 0.4 * h)
        angle = 0.0 if rng.random() < 0.5 else float(rng.uniform(-20, 20))
        polygon = shape_polygon(kind, (cx, cy), (w, h), angle)
        colour = _contrasting_colour(rng, image.reshape(-1, 3)[::97].mean(0))
        if draw_shape(image, polygon, colour) is not None:
            return image
    raise DatasetError(f"could not draw a visible {kind} at imgsz={imgsz}; use a larger imgsz")


def _prepare(out: Path, settings: dict) -> bool:
    """Ready ``out`` for writing; True when it already holds exactly this dataset. A folder that cannot be written
    fails here, before any image is drawn (one ``OutputPathError`` line)."""
    import yaml

    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise DatasetError(f"{out} is not empty and is not a yolokit synthetic classification dataset; choose "
                               "a new or empty folder")
        data_yaml = out / "data.yaml"
        if data_yaml.is_file():
            existing = yaml.safe_load(data_yaml.read_text(encoding="utf-8")) or {}
            if existing.get("synth") == settings:
                return True  # reused as it is: nothing is written
    check_output_dir(out, "synthetic dataset folder", "choose a writable dataset folder")
    if (out / MARKER).is_file():
        (out / "data.yaml").unlink(missing_ok=True)
        for split in _SPLITS:
            shutil.rmtree(out / split, ignore_errors=True)
    (out / MARKER).write_text("Made by yolokit make_synthetic_classification; this folder may be regenerated.\n")
    return False


def _write_split(out: Path, split: str, split_index: int, count: int, settings: dict, noise_tile: np.ndarray) -> None:
    import cv2

    classes = settings["classes"]
    for name in classes:
        (out / split / name).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        kind = classes[index % len(classes)]
        rng = np.random.default_rng([settings["seed"], 3, split_index, index])
        image = render_class_image(rng, settings["imgsz"], kind, noise_tile)
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise DatasetError(f"JPEG encoding failed for synthetic image {split}/{index}")
        (out / split / kind / f"{index:05d}.jpg").write_bytes(encoded.tobytes())


def make_synthetic_classification(out: str | Path, *, n_train: int = 200, n_val: int = 50, imgsz: int = 64,
                                  seed: int = 0, classes: tuple[str, ...] | list[str] = SHAPES) -> Path:
    """Write the dataset (module docstring) to ``out`` and return the folder (train with ``data=<folder>``).

    ``out`` must be new, empty, or an earlier synthetic classification dataset; the same arguments reuse the
    files, others regenerate them. Only the main process writes.
    """
    classes = tuple(classes)
    if min(n_train, n_val) < 0 or n_train < len(classes):
        raise ConfigError(f"synthetic classification needs n_train >= the class count ({len(classes)}) and "
                          f"n_val >= 0, got n_train={n_train} n_val={n_val}")
    if imgsz < 32:
        raise ConfigError(f"synthetic imgsz must be >= 32, got {imgsz}")
    if not classes or any(c not in SHAPES for c in classes) or len(set(classes)) != len(classes):
        raise ConfigError(f"synthetic classes must be distinct names from {', '.join(SHAPES)}, got {list(classes)}")
    out = Path(out).expanduser().absolute()
    if not is_main_process():
        return out
    settings = {"version": CLASSIFY_SYNTH_VERSION, "task": "classify", "n_train": n_train, "n_val": n_val,
                "imgsz": imgsz, "seed": seed, "classes": list(classes)}
    if _prepare(out, settings):
        logger.info("Synthetic classification dataset %s already exists with these settings; reusing it", out)
        return out
    noise_tile = np.random.default_rng([seed, 0]).integers(0, 256, (imgsz * 2, imgsz * 2, 3), dtype=np.uint8)
    for split_index, (split, count) in enumerate(zip(_SPLITS, (n_train, n_val), strict=True)):
        if count:
            _write_split(out, split, split_index, count, settings, noise_tile)
    import yaml

    body = {"path": str(out), "train": "train", **({"val": "val"} if n_val else {}),
            "names": dict(enumerate(sorted(classes))), "synth": settings}  # the folder order
    atomic_write_text(out / "data.yaml", f"# yolokit synthetic classification dataset (seed {seed})\n"
                      + yaml.safe_dump(body, sort_keys=False))
    logger.info("Synthetic classification dataset: %d train + %d val images of %d classes written to %s", n_train,
                n_val, len(classes), out)
    return out
