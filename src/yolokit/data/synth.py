"""Built-in synthetic detection dataset: flat-coloured shapes on textured backgrounds, in YOLO format.

``make_synthetic_dataset(out)`` writes ``out/images/{train,val}/00000.jpg``, ``out/labels/{train,val}/00000.txt``
and, last and atomically, ``out/data.yaml`` (so a half-made dataset never looks complete). Every image is drawn
from its own random generator seeded by ``(seed, split, index)``: the same arguments give byte-identical files.

Content: 1..``max_objects`` shapes per image (about ``background_fraction`` of the images have none) of the classes
asked for (default ``rectangle, ellipse, triangle`` = the classes of the reference fixture models; ``cross`` and
``star`` are also available), sized from 5 % to 45 % of the image with aspect ratios up to 2.5, some rotated, some
cut by the image border, overlapping at most ~35 % of the smaller box, on noise / gradient / stripe backgrounds.
Each label is the tight box of the drawn polygon's pixels, clipped to the image.
"""

from __future__ import annotations

import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from yolokit.errors import ConfigError, DatasetError
from yolokit.utils.dist import is_main_process
from yolokit.utils.io import atomic_write_text, check_output_dir

logger = logging.getLogger(__name__)

SHAPES = ("rectangle", "ellipse", "triangle", "cross", "star")
DEFAULT_CLASSES = ("rectangle", "ellipse", "triangle")
BACKGROUNDS = {"noise": 0.4, "gradient": 0.3, "stripes": 0.3}  # kind -> relative frequency
SYNTH_VERSION = 1
MARKER = ".yolokit-synth"
MAX_OVERLAP = 0.35  # largest intersection / smaller-box area between two objects
_SPLITS = ("train", "val")


def shape_polygon(kind: str, center: tuple[float, float], size: tuple[float, float], angle: float = 0.0,
                  apex: float = 0.0) -> np.ndarray:
    """Outline of a shape -> ``(k, 2)`` float64 ``x, y`` pixel coordinates (pixel i spans [i, i+1)).

    ``size`` is ``(w, h)`` before rotation by ``angle`` degrees (counter-clockwise on screen) about ``center``;
    ``apex`` in [-1, 1] moves a triangle's tip sideways (0: isosceles).
    """
    w, h = size[0] / 2, size[1] / 2
    if kind == "rectangle":
        points = [(-w, -h), (w, -h), (w, h), (-w, h)]
    elif kind == "ellipse":
        t = np.linspace(0, 2 * np.pi, int(np.clip((w + h) * 0.6, 16, 64)), endpoint=False)
        points = np.stack([w * np.cos(t), h * np.sin(t)], 1)
    elif kind == "triangle":
        points = [(apex * w, -h), (w, h), (-w, h)]
    elif kind == "cross":
        a, b = w / 3, h / 3
        points = [(-a, -h), (a, -h), (a, -b), (w, -b), (w, b), (a, b), (a, h), (-a, h), (-a, b), (-w, b),
                  (-w, -b), (-a, -b)]
    elif kind == "star":
        t = -np.pi / 2 + np.arange(10) * np.pi / 5
        radius = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        points = np.stack([w * radius * np.cos(t), h * radius * np.sin(t)], 1)
    else:
        raise ConfigError(f"unknown shape {kind!r}; expected one of {', '.join(SHAPES)}")
    points = np.asarray(points, dtype=np.float64)
    theta = np.deg2rad(-angle)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return points @ rotation.T + np.asarray(center, dtype=np.float64)


def clip_polygon(points: np.ndarray, x_max: float, y_max: float) -> np.ndarray:
    """Sutherland-Hodgman clip of a polygon ``(k, 2)`` to the box ``[0, x_max] x [0, y_max]`` -> ``(m, 2)``."""
    polygon = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    for axis, limit, sign in ((0, 0.0, 1.0), (0, x_max, -1.0), (1, 0.0, 1.0), (1, y_max, -1.0)):
        distance = sign * (polygon[:, axis] - limit)  # >= 0: inside this edge
        if len(polygon) == 0 or (distance >= 0).all():
            continue
        inside = distance >= 0
        previous, previous_distance = np.roll(polygon, 1, axis=0), np.roll(distance, 1)
        crosses = inside != np.roll(inside, 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = previous_distance / (previous_distance - distance)
            crossing = previous + t[:, None] * (polygon - previous)
        # for each vertex: [crossing point of the edge that ends here, the vertex itself], kept where they apply
        candidates = np.stack([crossing, polygon], 1).reshape(-1, 2)
        polygon = candidates[np.stack([crosses, inside], 1).reshape(-1)]
    return polygon


def draw_shape(image: np.ndarray, points: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray | None:
    """Fill polygon ``points`` (``(k, 2)`` x, y) into ``image`` (H, W, 3) in place.

    Returns the tight box of the filled pixels, ``x1, y1, x2, y2`` in pixel-edge coordinates (pixel i spans
    [i, i+1), so ``x2 = last column + 1``), or None when less than 2x2 pixels of it fall inside the image.
    """
    import cv2

    height, width = image.shape[:2]
    clipped = clip_polygon(points - 0.5, width - 1, height - 1)  # pixel-edge -> pixel-centre coordinates
    if len(clipped) < 3:
        return None
    vertices = np.rint(clipped).astype(np.int32)
    x1, y1 = vertices.min(0)
    x2, y2 = vertices.max(0) + 1
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    cv2.fillPoly(image, [vertices], tuple(int(c) for c in colour), lineType=cv2.LINE_8)
    return np.array([x1, y1, x2, y2], dtype=np.float64)


def _background(rng: np.random.Generator, imgsz: int, noise_tile: np.ndarray,
                kinds: tuple[str, ...] = tuple(BACKGROUNDS)) -> np.ndarray:
    """Noise, smooth gradient or rotated stripes, plus tile noise of random strength -> (imgsz, imgsz, 3) uint8."""
    import cv2

    weights = np.array([BACKGROUNDS[k] for k in kinds])
    kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]
    if kind == "noise":
        colour = rng.integers(70, 190) + rng.integers(-20, 21, 3)
        image = np.empty((imgsz, imgsz, 3), np.uint8)
        cv2.rectangle(image, (0, 0), (imgsz, imgsz), tuple(int(c) for c in colour), -1)  # fastest fill
    elif kind == "gradient":
        corners = rng.integers(30, 226, (3, 3, 3)).astype(np.uint8)
        image = cv2.resize(corners, (imgsz, imgsz), interpolation=cv2.INTER_LINEAR)
    else:
        # one column of horizontal stripes, rotated about the image centre; columns repeat via the border mode
        side = int(imgsz * 1.45) + 2
        colour = rng.integers(40, 216, 3)
        other = np.clip(colour + rng.integers(-70, 71, 3), 0, 255)
        mask = (np.arange(side) // (rng.uniform(3, 20))) % 2 == 0
        column = np.where(mask[:, None, None], colour, other).astype(np.uint8)  # (side, 1, 3)
        matrix = cv2.getRotationMatrix2D((0.0, side / 2), float(rng.uniform(0, 180)), 1.0)
        matrix[:, 2] += (imgsz / 2, (imgsz - side) / 2)
        image = cv2.warpAffine(column, matrix, (imgsz, imgsz), flags=cv2.INTER_NEAREST,
                               borderMode=cv2.BORDER_REPLICATE)
    return _add_noise(rng, image, noise_tile, float(rng.uniform(8, 50) if kind == "noise" else rng.uniform(0, 20)))


def _add_noise(rng: np.random.Generator, image: np.ndarray, noise_tile: np.ndarray, amplitude: float) -> np.ndarray:
    """``image + amplitude * (crop of a uniform [0, 255] tile - 128) / 128``, saturated to uint8."""
    import cv2

    height, width = image.shape[:2]
    oy, ox = rng.integers(0, noise_tile.shape[0] - height + 1), rng.integers(0, noise_tile.shape[1] - width + 1)
    crop = noise_tile[oy:oy + height, ox:ox + width]
    return cv2.addWeighted(image, 1.0, crop, amplitude / 128, -amplitude)


def _contrasting_colour(rng: np.random.Generator, background_mean: np.ndarray) -> tuple[int, int, int]:
    """A random BGR colour, the most distant from ``background_mean`` of 8 draws."""
    candidates = rng.integers(0, 256, (8, 3))
    best = candidates[np.abs(candidates - background_mean).sum(1).argmax()]
    return int(best[0]), int(best[1]), int(best[2])


def _sample_object(rng: np.random.Generator, imgsz: int, kind: str) -> np.ndarray:
    """Random outline of one shape: size 5-45 % of the image, aspect up to 2.5, maybe rotated, maybe cut."""
    side = imgsz * np.exp(rng.uniform(np.log(0.05), np.log(0.45)))
    aspect = np.exp(rng.uniform(-np.log(2.5), np.log(2.5))) if kind != "star" else np.exp(rng.uniform(-0.2, 0.2))
    w, h = max(side * np.sqrt(aspect), 6.0), max(side / np.sqrt(aspect), 6.0)
    cx, cy = (rng.uniform(0.2 * d, imgsz - 0.2 * d) for d in (w, h))
    angle = 0.0 if rng.random() < 0.6 else float(rng.uniform(-40, 40))
    apex = float(rng.uniform(-0.6, 0.6)) if rng.random() < 0.5 else 0.0
    return shape_polygon(kind, (cx, cy), (w, h), angle, apex)


def _max_overlap(box: np.ndarray, boxes: list[np.ndarray]) -> float:
    """Largest intersection / smaller-box area between ``box`` and any of ``boxes`` (xyxy)."""
    if not boxes:
        return 0.0
    others = np.asarray(boxes)
    inter_w = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    inter_h = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    areas = np.minimum((box[2] - box[0]) * (box[3] - box[1]), (others[:, 2] - others[:, 0]) *
                       (others[:, 3] - others[:, 1]))
    return float((inter_w * inter_h / areas).max())


def render_image(rng: np.random.Generator, imgsz: int, num_classes: int, classes: tuple[str, ...], n_objects: int,
                 noise_tile: np.ndarray, backgrounds: tuple[str, ...] = tuple(BACKGROUNDS),
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one image -> ``(image (imgsz, imgsz, 3) uint8 BGR, cls (n,) int64, boxes (n, 4) xyxy pixel edges)``.

    Objects are placed so that no two overlap by more than ``MAX_OVERLAP`` of the smaller box, and drawn largest
    first so small shapes stay visible.
    """
    image = _background(rng, imgsz, noise_tile, backgrounds)
    background_mean = image.reshape(-1, 3)[:: 97].mean(0)
    placed: list[tuple[int, np.ndarray]] = []
    boxes: list[np.ndarray] = []
    for _ in range(n_objects):
        class_id = int(rng.integers(0, num_classes))
        for _attempt in range(20):
            polygon = _sample_object(rng, imgsz, classes[class_id])
            box = np.clip(np.concatenate([polygon.min(0), polygon.max(0)]), 0, imgsz)
            if _max_overlap(box, boxes) <= MAX_OVERLAP and (box[2] - box[0]) * (box[3] - box[1]) > 0:
                placed.append((class_id, polygon))
                boxes.append(box)
                break
    order = sorted(range(len(placed)), key=lambda i: -(boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1]))
    cls, drawn = [], []
    for i in order:
        class_id, polygon = placed[i]
        box = draw_shape(image, polygon, _contrasting_colour(rng, background_mean))
        if box is not None:
            cls.append(class_id)
            drawn.append(box)
    return image, np.asarray(cls, np.int64), np.asarray(drawn, np.float64).reshape(-1, 4)


def _label_text(cls: np.ndarray, boxes_xyxy: np.ndarray, imgsz: int) -> str:
    """YOLO label rows ``class cx cy w h`` (normalised, 6 decimals)."""
    rows = []
    for class_id, (x1, y1, x2, y2) in zip(cls.tolist(), boxes_xyxy.tolist(), strict=True):
        cx, cy, w, h = (x1 + x2) / 2 / imgsz, (y1 + y2) / 2 / imgsz, (x2 - x1) / imgsz, (y2 - y1) / imgsz
        rows.append(f"{class_id} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    return "".join(rows)


def _check_arguments(n_train: int, n_val: int, imgsz: int, classes: tuple[str, ...], max_objects: int,
                     background_fraction: float, backgrounds: tuple[str, ...], jpeg_quality: int) -> None:
    if min(n_train, n_val) < 0 or n_train + n_val < 1:
        raise ConfigError(f"synthetic dataset sizes must be >= 0 with at least one image, got train={n_train} "
                          f"val={n_val}")
    if imgsz < 32:
        raise ConfigError(f"synthetic imgsz must be >= 32, got {imgsz}")
    unknown = [c for c in classes if c not in SHAPES]
    if not classes or unknown or len(set(classes)) != len(classes):
        raise ConfigError(f"synthetic classes must be distinct names from {', '.join(SHAPES)}, got {list(classes)}")
    if not backgrounds or any(b not in BACKGROUNDS for b in backgrounds) or len(set(backgrounds)) != len(backgrounds):
        raise ConfigError(f"synthetic backgrounds must be distinct names from {', '.join(BACKGROUNDS)}, got "
                          f"{list(backgrounds)}")
    if max_objects < 1 or not 0 <= background_fraction < 1 or not 1 <= jpeg_quality <= 100:
        raise ConfigError(f"need max_objects >= 1, 0 <= background_fraction < 1 and 1 <= jpeg_quality <= 100, got "
                          f"{max_objects}, {background_fraction}, {jpeg_quality}")


def _prepare_out(out: Path, params: dict) -> bool:
    """Make ``out`` ready for writing; True when it already holds this exact dataset (nothing to do).

    Only an empty folder or one marked as a yolokit synthetic dataset is used; old splits are removed first. A
    folder that cannot be written fails here, before any image is drawn (one ``OutputPathError`` line).
    """
    import yaml

    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise DatasetError(f"{out} is not empty and is not a yolokit synthetic dataset; choose a new or empty "
                               f"folder")
        data_yaml = out / "data.yaml"
        if data_yaml.is_file():
            existing = yaml.safe_load(data_yaml.read_text(encoding="utf-8")) or {}
            counts = [len(list((out / "images" / s).glob("*.jpg"))) for s in _SPLITS]
            if existing.get("synth") == params and counts == [params["n_train"], params["n_val"]]:
                return True  # reused as it is: nothing is written (a read-only copy works too)
    check_output_dir(out, "synthetic dataset folder", "choose a writable dataset folder")
    if (out / MARKER).is_file():
        (out / "data.yaml").unlink(missing_ok=True)
        for folder in ("images", "labels"):
            for split in _SPLITS:
                shutil.rmtree(out / folder / split, ignore_errors=True)
            for cache in (out / folder).glob("*.cache"):
                cache.unlink()
    (out / MARKER).write_text("Made by yolokit make_synthetic_dataset; this folder may be regenerated.\n")
    return False


def _write_image(out: Path, split: str, split_index: int, index: int, n_objects_max: int, settings: dict,
                 noise_tile: np.ndarray) -> int:
    """Render image ``index`` of a split from its own seed and write its .jpg and .txt; returns its box count."""
    import cv2

    rng = np.random.default_rng([settings["seed"], 2, split_index, index])
    n_objects = int(rng.integers(1, n_objects_max + 1)) if n_objects_max else 0
    classes, imgsz = settings["classes"], settings["imgsz"]
    image, cls, boxes = render_image(rng, imgsz, len(classes), classes, n_objects, noise_tile,
                                     settings["backgrounds"])
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, settings["jpeg_quality"]])
    if not ok:
        raise DatasetError(f"JPEG encoding failed for synthetic image {split}/{index}")
    (out / "images" / split / f"{index:05d}.jpg").write_bytes(encoded.tobytes())
    (out / "labels" / split / f"{index:05d}.txt").write_text(_label_text(cls, boxes, imgsz))
    return len(cls)


def _write_split(out: Path, split: str, split_index: int, count: int, settings: dict, noise_tile: np.ndarray,
                 workers: int) -> int:
    """Render and write the images and labels of one split (in ``workers`` threads); returns the box count."""
    for folder in ("images", "labels"):
        (out / folder / split).mkdir(parents=True, exist_ok=True)
    n_background = round(count * settings["background_fraction"])
    if settings["background_fraction"] > 0 and count >= 4:
        n_background = max(n_background, 1)
    background = set(np.random.default_rng([settings["seed"], 1, split_index]).permutation(count)[:n_background])
    limits = [0 if index in background else settings["max_objects"] for index in range(count)]
    write = lambda i: _write_image(out, split, split_index, i, limits[i], settings, noise_tile)
    if workers == 1:
        return sum(write(i) for i in range(count))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return sum(pool.map(write, range(count)))


def make_synthetic_dataset(out: str | Path, *, n_train: int = 64, n_val: int = 16, imgsz: int = 320, seed: int = 0,
                           classes: tuple[str, ...] | list[str] = DEFAULT_CLASSES, max_objects: int = 6,
                           background_fraction: float = 0.1, jpeg_quality: int = 90,
                           backgrounds: tuple[str, ...] | list[str] = tuple(BACKGROUNDS),
                           workers: int | None = None) -> Path:
    """Write a synthetic YOLO-format dataset to ``out`` and return the path of its ``data.yaml``.

    Layout: ``out/images/{train,val}/*.jpg`` (``imgsz`` x ``imgsz``), ``out/labels/{train,val}/*.txt``,
    ``out/data.yaml`` (``path`` absolute, ``train: images/train``, ``val: images/val``, ``names``, and a ``synth``
    record of these arguments). Calling again with the same arguments reuses the files; other arguments
    regenerate them. ``out`` must be new, empty, or an earlier synthetic dataset. Only the main process writes.
    ``backgrounds`` picks the background kinds (``noise`` alone resembles the data the reference fixture models
    were trained on). Images are rendered in ``workers`` threads (default: up to 4, one per core); the output does
    not depend on it.
    """
    classes, backgrounds = tuple(classes), tuple(backgrounds)
    _check_arguments(n_train, n_val, imgsz, classes, max_objects, background_fraction, backgrounds, jpeg_quality)
    out = Path(out).expanduser().absolute()
    data_yaml = out / "data.yaml"
    if not is_main_process():
        return data_yaml
    settings = {"version": SYNTH_VERSION, "n_train": n_train, "n_val": n_val, "imgsz": imgsz, "seed": seed,
                "classes": list(classes), "max_objects": max_objects, "background_fraction": background_fraction,
                "backgrounds": list(backgrounds), "jpeg_quality": jpeg_quality}
    if _prepare_out(out, settings):
        logger.info(f"Synthetic dataset {out} already exists with these settings; reusing it")
        return data_yaml
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    noise_tile = np.random.default_rng([seed, 0]).integers(0, 256, (imgsz * 2, imgsz * 2, 3), dtype=np.uint8)
    boxes = 0
    for split_index, (split, count) in enumerate(zip(_SPLITS, (n_train, n_val), strict=True)):
        split_settings = {**settings, "classes": classes, "backgrounds": backgrounds}
        boxes += _write_split(out, split, split_index, count, split_settings, noise_tile, workers)
    _write_data_yaml(data_yaml, classes, settings)
    logger.info(f"Synthetic dataset: {n_train} train + {n_val} val images ({boxes} boxes) written to {out}")
    return data_yaml


def _write_data_yaml(data_yaml: Path, classes: tuple[str, ...], settings: dict) -> None:
    import yaml

    body = {"path": str(data_yaml.parent), "train": "images/train", "val": "images/val", "nc": len(classes),
            "names": dict(enumerate(classes)), "synth": settings}
    header = (f"# yolokit synthetic shapes dataset (seed {settings['seed']}); regenerate with "
              f"`yolokit data synth {data_yaml.parent}`\n")
    atomic_write_text(data_yaml, header + yaml.safe_dump(body, sort_keys=False))
