"""One image and its YOLO label file (where it is, the image's size from its header, every row checked), and the
records a label scan makes of them (:class:`ImageLabels`, :class:`ParsedLabels`, :class:`ScanReport`).

A label file holds one object per row, ``class cx cy w h`` with the box centre and size normalised to [0, 1] by the
image width and height (or a polygon ``class x1 y1 x2 y2 ...``, read as its tight box). Its path is the image path
with the last ``/images/`` replaced by ``/labels/`` and the suffix by ``.txt`` (:func:`label_path_for`). Label files
over ``MAX_LABEL_BYTES`` and images whose header declares more than ``image.MAX_IMAGE_PIXELS`` are unreadable.
:mod:`yolokit.data.labels` scans a whole dataset with these.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

IMG_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".dng", ".mpo", ".pfm"})
COORD_TOLERANCE = 1e-2  # coordinates within this distance outside [0, 1] are clipped, further out the row is bad
MAX_LABEL_BYTES = 16 * 2**20  # a label file larger than this is reported unreadable without being read (~400k rows)
_EXIF_ORIENTATION = 0x0112
_EXIF_TRANSPOSED = frozenset({5, 6, 7, 8})  # orientations that swap width and height


@dataclass
class ImageLabels:
    """Ground truth of one image.

    Attributes:
        im_file: resolved image path.
        shape: ``(h, w)`` of the image as decoded (after EXIF orientation, like ``read_image``).
        cls: ``(n,)`` int64 class indices in ``[0, nc)``.
        bboxes: ``(n, 4)`` float32 boxes, normalised ``cx, cy, w, h`` in [0, 1].
        image_id: the COCO image id when the labels come from a COCO json, else None.
        crowd_cls, crowd_bboxes: COCO crowd regions (``iscrowd=1``), same layout as ``cls`` / ``bboxes``; kept
            apart so that they are never trained on, and used by validation as regions where detections are
            neither true nor false positives (as pycocotools does). Empty for YOLO txt labels.
    """

    im_file: str
    shape: tuple[int, int]
    cls: np.ndarray
    bboxes: np.ndarray
    image_id: int | None = None
    crowd_cls: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    crowd_bboxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.float32))

    def __len__(self) -> int:
        return int(self.cls.shape[0])


@dataclass
class ScanReport:
    """What a label scan found. ``messages`` holds one ``file:line: reason`` line per problem."""

    images: int = 0  # image paths given
    found: int = 0  # images with a label file holding at least one valid row
    missing: int = 0  # images without a label file (background)
    empty: int = 0  # images whose label file has no valid row (background)
    corrupt: int = 0  # images (or label files) that could not be read: skipped
    bad_rows: int = 0  # label rows skipped
    duplicates: int = 0  # exact duplicate rows dropped (one copy kept)
    instances: int = 0  # boxes kept
    from_cache: bool = False
    messages: list[str] = field(default_factory=list)

    @property
    def background(self) -> int:
        """Images kept without any box."""
        return self.missing + self.empty

    def summary(self, desc: str = "labels") -> str:
        """One line: ``labels/train: 64 images, 60 labelled, 4 background (missing 4, empty 0), ...``."""
        source = " (from cache)" if self.from_cache else ""
        return (f"{desc}{source}: {self.images} images, {self.found} labelled, {self.background} background "
                f"(missing {self.missing}, empty {self.empty}), {self.corrupt} corrupt, {self.instances} boxes, "
                f"{self.bad_rows} bad rows, {self.duplicates} duplicate rows")


@dataclass
class ParsedLabels:
    """Result of :func:`parse_label_file`: the kept rows and the problems found."""

    cls: np.ndarray  # (n,) int64
    bboxes: np.ndarray  # (n, 4) float32 normalised cx, cy, w, h
    messages: list[str]
    bad_rows: int
    duplicates: int

def label_path_for(image_path: str | Path) -> Path:
    """Label path of an image: last ``/images/`` -> ``/labels/``, suffix -> ``.txt``.

    ``/d/images/train/a.jpg`` -> ``/d/labels/train/a.txt``. Without an ``images`` folder in the path the label file
    sits beside the image (``/d/a.jpg`` -> ``/d/a.txt``).
    """
    text = os.fspath(image_path)
    marker_in, marker_out = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    head, sep, tail = text.rpartition(marker_in)
    if sep:
        text = head + marker_out + tail
    return Path(text).with_suffix(".txt")


def read_image_shape(path: str | Path) -> tuple[int, int]:
    """``(h, w)`` of an image from its header only (no pixel decoding).

    EXIF orientations 5-8 swap width and height, as :func:`yolokit.data.sources.read_image` applies the EXIF
    orientation of every format when decoding. Raises ``OSError`` when the file is not a readable image.
    """
    import warnings

    from PIL import Image

    from yolokit.data.image import MAX_IMAGE_PIXELS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if _exif_orientation(image) in _EXIF_TRANSPOSED:
                    width, height = height, width
    except Image.DecompressionBombError as error:
        raise OSError(f"decompression bomb ({error})") from None
    except (SyntaxError, EOFError, TypeError) as error:  # raised by some Pillow header parsers on bad files
        raise OSError(f"bad image header ({error})") from None
    if width < 1 or height < 1:
        raise OSError(f"image has size {width}x{height}")
    if width * height > MAX_IMAGE_PIXELS:
        raise OSError(f"image declares {width}x{height} pixels, more than the {MAX_IMAGE_PIXELS} yolokit decodes")
    return height, width


def _exif_orientation(image: Any) -> int:
    """EXIF orientation tag of an opened PIL image (1 when absent or unreadable, as ``read_image`` treats it)."""
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except (OSError, ValueError, TypeError, SyntaxError):
        return 1


def _parse_row(fields: list[str], nc: int) -> tuple[int, list[float]] | str:
    """One label row -> ``(class, [cx, cy, w, h])`` clipped to the image, or the reason it is bad.

    Rows of ``1 + 2k`` values (k >= 3) are polygons ``class x1 y1 x2 y2 ...`` and become their tight box.
    """
    if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
        return f"expected 5 columns 'class cx cy w h', found {len(fields)}"
    try:
        values = [float(v) for v in fields]
    except ValueError:
        bad = next(v for v in fields if not _is_float(v))
        return f"non-numeric value {bad!r}"
    if not all(np.isfinite(values)):
        return "non-finite value (nan or inf)"
    cls_value, coords = values[0], values[1:]
    if cls_value != int(cls_value):
        return f"class id {fields[0]} is not an integer"
    if not 0 <= int(cls_value) < nc:
        return f"class id {int(cls_value)} out of range [0, {nc})"
    if len(coords) == 4:
        cx, cy, w, h = coords
        if w <= 0 or h <= 0:
            return f"zero or negative width/height (w={w:g}, h={h:g})"
        x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    else:
        xs, ys = coords[0::2], coords[1::2]
        x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
    lowest, highest = min(x1, y1), max(x2, y2)
    if lowest < -COORD_TOLERANCE or highest > 1 + COORD_TOLERANCE:
        return f"coordinates out of [0, 1] (box spans {lowest:g}..{highest:g}, tolerance {COORD_TOLERANCE:g})"
    x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in (x1, y1, x2, y2))
    if x2 <= x1 or y2 <= y1:
        return f"zero or negative width/height (w={x2 - x1:g}, h={y2 - y1:g})"
    return int(cls_value), [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_label_file(path: str | Path, nc: int) -> ParsedLabels:
    """Parse a YOLO label file; bad rows are reported as ``path:line: reason`` and skipped, duplicates dropped.

    Raises ``OSError`` / ``UnicodeDecodeError`` when the file cannot be read as text.
    """
    size = os.stat(path).st_size
    if size > MAX_LABEL_BYTES:
        raise OSError(f"{size} bytes, more than the {MAX_LABEL_BYTES}-byte limit for a label file")
    text = Path(path).read_text(encoding="utf-8-sig")  # a leading BOM is not part of the first row
    classes, boxes, messages = [], [], []
    seen: dict[tuple[float, ...], int] = {}
    bad_rows = duplicates = 0
    for line_number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        parsed = _parse_row(fields, nc)
        if isinstance(parsed, str):
            bad_rows += 1
            messages.append(f"{path}:{line_number}: {parsed}")
            continue
        key = (parsed[0], *parsed[1])
        if key in seen:
            duplicates += 1
            messages.append(f"{path}:{line_number}: duplicate of line {seen[key]} (one copy kept)")
            continue
        seen[key] = line_number
        classes.append(parsed[0])
        boxes.append(parsed[1])
    return ParsedLabels(np.asarray(classes, dtype=np.int64).reshape(-1),
                        np.asarray(boxes, dtype=np.float32).reshape(-1, 4), messages, bad_rows, duplicates)
