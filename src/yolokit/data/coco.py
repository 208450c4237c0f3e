"""COCO instances json (``instances_val2017.json`` style) -> yolokit labels.

Category ids are remapped to contiguous class indices ``0..nc-1`` in sorted id order; ``category_ids[i]`` is the
COCO id of class ``i`` (needed to write predictions back in COCO ids). Boxes ``[x, y, w, h]`` in pixels become
normalised ``cx, cy, w, h``; crowd annotations (``iscrowd=1``) become the images' ``crowd_cls`` / ``crowd_bboxes``
(ignore regions for validation, never training targets); images without annotations are kept as background images.

Image folder of a bare json (:func:`find_coco_image_root`): the first of these folders that holds the first image
listed in the json is used: the json's folder, its ``images`` subfolder, an ``images`` folder beside the json's
folder, the json folder's parent; each is also tried with the json stem's last ``_`` part appended
(``annotations/instances_val2017.json`` -> ``images/val2017``, ``../val2017``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from yolokit.data.labels import ImageLabels, read_image_shape
from yolokit.errors import DatasetError

logger = logging.getLogger(__name__)


def read_coco_json(json_path: str | Path) -> dict[str, Any]:
    """Parse a COCO json and check it has ``images`` and ``categories`` lists; ``DatasetError`` otherwise."""
    path = Path(json_path)
    if not path.is_file():
        raise DatasetError(f"COCO annotation file not found: {path}; expected an instances json such as "
                           f"annotations/instances_val2017.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path}:{error.lineno}: JSON syntax error ({error.msg}); fix or re-export the "
                           f"annotation file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read COCO annotation file {path} ({error})") from None
    except (RecursionError, ValueError) as error:  # nesting too deep, an int of more than 4300 digits
        raise DatasetError(f"{path}: unreadable JSON ({type(error).__name__}); fix or re-export the annotation "
                           "file") from None  # fmt: skip
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("categories"), list):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DatasetError(f"{path}: expected a COCO json with 'images' and 'categories' lists, found {found}")
    return data


def coco_categories(data: dict[str, Any], json_path: str | Path) -> tuple[dict[int, str], list[int]]:
    """``(names {0: 'person', ...}, category_ids [1, 2, ...])`` with classes in sorted category-id order."""
    try:
        categories = sorted(((int(c["id"]), str(c["name"])) for c in data["categories"]), key=lambda c: c[0])
    except (KeyError, TypeError, ValueError):
        raise DatasetError(f"{json_path}: every category needs an integer 'id' and a 'name'") from None
    if not categories:
        raise DatasetError(f"{json_path}: 'categories' is empty; a COCO json needs at least one category")
    ids = [cid for cid, _ in categories]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{json_path}: duplicate category ids in 'categories' ({ids})")
    return {i: name for i, (_, name) in enumerate(categories)}, ids


def find_coco_image_root(json_path: str | Path, data: dict[str, Any]) -> Path:
    """Folder the ``file_name`` entries of a bare COCO json are relative to (rule in the module docstring)."""
    json_dir = Path(json_path).resolve().parent
    tag = Path(json_path).stem.rpartition("_")[2]
    bases = [json_dir, json_dir / "images", json_dir.parent / "images", json_dir.parent]
    candidates = [c for base in bases for c in (base, base / tag)]
    if not data["images"]:
        return json_dir
    first = str(data["images"][0].get("file_name", ""))
    for candidate in candidates:
        if (candidate / first).is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise DatasetError(f"{json_path}: cannot find its first image {first!r} in any of {tried}; put the images in "
                       f"one of them or use a data YAML with '<split>: <image folder>' and '<split>_json'")


def coco_image_paths(data: dict[str, Any], image_root: Path) -> list[Path]:
    """Resolved, sorted paths of every image listed in a COCO json."""
    return sorted({(image_root / str(image["file_name"])).resolve() for image in data["images"]})


def _image_records(data: dict[str, Any], image_root: Path, json_path: Path) -> dict[int, ImageLabels]:
    """COCO image id -> empty :class:`ImageLabels` (path, shape); shapes read from the file when not listed."""
    records: dict[int, ImageLabels] = {}
    for index, image in enumerate(data["images"]):
        try:
            image_id, file_name = int(image["id"]), str(image["file_name"])
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{json_path}: images[{index}] needs an integer 'id' and a 'file_name'") from None
        path = (image_root / file_name).resolve()
        if image.get("width") and image.get("height"):
            shape = (int(image["height"]), int(image["width"]))
        else:
            try:
                shape = read_image_shape(path)
            except OSError as error:
                raise DatasetError(f"{json_path}: images[{index}] has no width/height and {path} cannot be read "
                                   f"({error})") from None
        records[image_id] = ImageLabels(str(path), shape, np.zeros(0, np.int64), np.zeros((0, 4), np.float32),
                                        image_id=image_id)
    return records


def _normalised_box(bbox: Any, shape: tuple[int, int]) -> list[float] | None:
    """COCO ``[x, y, w, h]`` pixels -> normalised ``[cx, cy, w, h]`` clipped to the image; None when empty."""
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return None
    height, width = shape
    x1, y1 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x2, y2 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    if not (x2 > x1 and y2 > y1):
        return None
    return [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height]


def load_coco_annotations(json_path: str | Path,
                          image_root: str | Path | None = None) -> tuple[list[ImageLabels], dict[int, str], list[int]]:
    """Read a COCO instances json -> ``(labels sorted by image path, names, category_ids)``.

    ``image_root`` is the folder ``file_name`` entries are relative to (default: :func:`find_coco_image_root`).
    Each :class:`ImageLabels` carries its COCO ``image_id``; crowd annotations go to ``crowd_cls`` /
    ``crowd_bboxes``. Annotations of unknown images or categories, and boxes with no area inside the image, are
    skipped; skips and crowd regions are counted in one log line.
    """
    json_path = Path(json_path)
    data = read_coco_json(json_path)
    names, category_ids = coco_categories(data, json_path)
    root = Path(image_root) if image_root is not None else find_coco_image_root(json_path, data)
    records = _image_records(data, root, json_path)
    class_of = {cid: i for i, cid in enumerate(category_ids)}
    # per image: (classes, boxes) of solid annotations, then of crowd regions
    rows = {image_id: (([], []), ([], [])) for image_id in records}
    skipped = {"unknown image": 0, "unknown category": 0, "empty or invalid box": 0}
    crowd = 0
    for annotation in data.get("annotations") or []:
        image_id, category = annotation.get("image_id"), annotation.get("category_id")
        if image_id not in records:
            skipped["unknown image"] += 1
        elif category not in class_of:
            skipped["unknown category"] += 1
        elif (box := _normalised_box(annotation.get("bbox"), records[image_id].shape)) is None:
            skipped["empty or invalid box"] += 1
        else:
            is_crowd = bool(annotation.get("iscrowd", 0))
            crowd += is_crowd
            classes, boxes = rows[image_id][is_crowd]
            classes.append(class_of[category])
            boxes.append(box)
    for image_id, ((classes, boxes), (crowd_classes, crowd_boxes)) in rows.items():
        records[image_id].cls = np.asarray(classes, dtype=np.int64).reshape(-1)
        records[image_id].bboxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        records[image_id].crowd_cls = np.asarray(crowd_classes, dtype=np.int64).reshape(-1)
        records[image_id].crowd_bboxes = np.asarray(crowd_boxes, dtype=np.float32).reshape(-1, 4)
    if crowd:
        logger.info(f"{json_path}: {crowd} crowd annotations kept as ignore regions (not counted as instances)")
    if any(skipped.values()):
        details = ", ".join(f"{count} {reason}" for reason, count in skipped.items() if count)
        logger.info(f"{json_path}: skipped annotations: {details}")
    labels = sorted(records.values(), key=lambda item: item.im_file)
    return labels, names, category_ids
