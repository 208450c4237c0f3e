"""YOLO-format label files: parse and check every row, read image sizes cheaply, cache the result.

A label file holds one object per row, ``class cx cy w h`` with the box centre and size normalised to [0, 1] by the
image width and height. Its path is the image path with the last ``/images/`` replaced by ``/labels/`` and the
suffix by ``.txt`` (:func:`label_path_for`). A missing or empty label file means a background image (kept).

:func:`scan_labels` checks every row and reports each bad one as ``file:line: reason`` (the row is skipped, the rest
of the file kept). The parsed labels are cached in an ``.npz`` archive (no pickle) keyed by a hash of the paths,
sizes and modification times of every image and label file, so a second scan of unchanged files reads nothing. A
cache is input too: one whose values a scan could not have written (class ids outside ``[0, nc)``, NaN or
out-of-range boxes) is ignored with a warning and the labels are scanned again. Label files over
``MAX_LABEL_BYTES`` and images whose header declares more than ``image.MAX_IMAGE_PIXELS`` are reported unreadable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yolokit.utils.dist import is_main_process
from yolokit.utils.io import atomic_open
from yolokit.utils.progress import progress as progress_bar

logger = logging.getLogger(__name__)

IMG_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".dng", ".mpo", ".pfm"})
COORD_TOLERANCE = 1e-2  # coordinates within this distance outside [0, 1] are clipped, further out the row is bad
CACHE_VERSION = 1
MAX_LABEL_BYTES = 16 * 2**20  # a label file larger than this is reported unreadable without being read (~400k rows)
MAX_LOGGED_MESSAGES = 10
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


def _scan_one(image_path: Path, nc: int) -> tuple[str, ImageLabels | None, ParsedLabels | None, str]:
    """Scan one image and its label file -> ``(outcome, labels, parsed, message)``.

    ``outcome`` is one of ``found``, ``missing``, ``empty``, ``corrupt``.
    """
    try:
        shape = read_image_shape(image_path)
    except (OSError, ValueError) as error:
        return "corrupt", None, None, f"{image_path}: unreadable image, skipped ({error})"
    label_path = label_path_for(image_path)
    empty = ImageLabels(str(image_path), shape, np.zeros(0, np.int64), np.zeros((0, 4), np.float32))
    if not label_path.is_file():
        return "missing", empty, None, ""
    try:
        parsed = parse_label_file(label_path, nc)
    except (OSError, UnicodeDecodeError) as error:
        return "corrupt", None, None, f"{label_path}: unreadable label file, image skipped ({error})"
    labels = ImageLabels(str(image_path), shape, parsed.cls, parsed.bboxes)
    return ("found" if len(labels) else "empty"), labels, parsed, ""


def _files_hash(image_paths: list[Path], nc: int) -> str:
    """sha256 over every image and label path with its size and mtime (label: ``-`` when missing)."""
    digest = hashlib.sha256(f"v{CACHE_VERSION} nc={nc} tol={COORD_TOLERANCE}\n".encode())
    for image_path in image_paths:
        parts = [os.fspath(image_path)]
        for path in (image_path, label_path_for(image_path)):
            try:
                stat = os.stat(path)
                parts.append(f"{stat.st_size}:{stat.st_mtime_ns}")
            except OSError:
                parts.append("-")
        digest.update(("\t".join(parts) + "\n").encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _save_cache(cache_path: Path, files_hash: str, labels: list[ImageLabels], report: ScanReport) -> None:
    """Write the scan to ``cache_path`` (npz, no pickle) atomically; an unwritable place only warns."""
    counts = {k: getattr(report, k) for k in ("images", "found", "missing", "empty", "corrupt", "bad_rows",
                                              "duplicates", "instances")}
    arrays = {
        "meta": np.array(json.dumps({"version": CACHE_VERSION, "hash": files_hash, "counts": counts})),
        "im_files": np.array([item.im_file for item in labels], dtype=str),
        "shapes": np.array([item.shape for item in labels], dtype=np.int64).reshape(-1, 2),
        "counts": np.array([len(item) for item in labels], dtype=np.int64),
        "cls": np.concatenate([item.cls for item in labels] or [np.zeros(0, np.int64)]),
        "bboxes": np.concatenate([item.bboxes for item in labels] or [np.zeros((0, 4), np.float32)]),
        "messages": np.array(report.messages, dtype=str),
    }
    try:
        with atomic_open(cache_path, "wb") as handle:
            np.savez(handle, **arrays)
    except OSError as error:
        logger.warning(f"Cannot write label cache {cache_path} ({error}); labels will be scanned again next time")


def _check_npz_sizes(cache_path: Path) -> None:
    """Every array of the cache must be stored uncompressed and hold the bytes its ``.npy`` header declares (numpy
    allocates the declared shape before reading, so a few-byte member declaring 10^12 elements is refused here)."""
    with zipfile.ZipFile(cache_path) as archive:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
                raise ValueError(f"member {info.filename} is compressed; yolokit writes stored members")
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(member)
            if dtype.hasobject or int(np.prod(shape, dtype=object)) * dtype.itemsize > info.file_size:
                raise ValueError(f"member {info.filename} declares {shape} {dtype} in {info.file_size} bytes")


def _check_cached_values(data: dict[str, np.ndarray], nc: int) -> None:
    """What a scan would never have written: classes outside ``[0, nc)``, non-finite or out-of-range boxes, empty
    shapes or negative counts (a cache whose hash matches is still input). Raises ``ValueError`` naming it."""
    cls, boxes = data["cls"], data["bboxes"]
    if cls.dtype.kind not in "iu" or boxes.dtype.kind != "f" or data["shapes"].dtype.kind not in "iu":
        raise ValueError(f"unexpected dtypes {cls.dtype}/{boxes.dtype}/{data['shapes'].dtype}")
    if cls.size and (cls.min() < 0 or cls.max() >= nc):
        raise ValueError(f"class ids {int(cls.min())}..{int(cls.max())} outside [0, {nc})")
    if boxes.size and not (np.isfinite(boxes).all() and (boxes >= 0).all() and (boxes <= 1).all()
                           and (boxes[:, 2:] > 0).all()):  # fmt: skip
        raise ValueError("boxes that are not finite normalised cx, cy, w, h in [0, 1]")
    if (data["shapes"] < 1).any() or (data["counts"] < 0).any():
        raise ValueError("image shapes below 1 pixel or negative box counts")


def _load_cache(cache_path: Path, files_hash: str, nc: int) -> tuple[list[ImageLabels], ScanReport] | None:
    """Labels and report from ``cache_path`` when it exists, is readable and matches ``files_hash``; else None."""
    if not cache_path.is_file():
        return None
    try:
        _check_npz_sizes(cache_path)
        with np.load(cache_path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["meta"]))
            if meta.get("version") != CACHE_VERSION or meta.get("hash") != files_hash:
                logger.info(f"Label cache {cache_path} is out of date; scanning again")
                return None
            data = {key: archive[key] for key in ("im_files", "shapes", "counts", "cls", "bboxes", "messages")}
        report = ScanReport(**meta["counts"], from_cache=True, messages=[str(m) for m in data["messages"]])
        offsets = np.concatenate([[0], np.cumsum(data["counts"])]).astype(np.int64)
        if not (len(data["im_files"]) == len(data["shapes"]) == len(data["counts"])
                and offsets[-1] == len(data["cls"]) == len(data["bboxes"]) and data["bboxes"].shape[1:] == (4,)):
            raise ValueError("inconsistent array lengths")
        _check_cached_values(data, nc)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, AttributeError,
            RecursionError, MemoryError) as error:  # fmt: skip
        logger.warning(f"Ignoring unreadable label cache {cache_path} ({error}); scanning again")
        return None
    labels = [
        ImageLabels(str(im_file), (int(shape[0]), int(shape[1])), data["cls"][start:end].astype(np.int64),
                    data["bboxes"][start:end].astype(np.float32))
        for im_file, shape, start, end in zip(data["im_files"], data["shapes"], offsets[:-1], offsets[1:], strict=True)
    ]
    return labels, report


def log_report(report: ScanReport, desc: str = "labels", max_messages: int = MAX_LOGGED_MESSAGES) -> None:
    """Log the one-line summary, then up to ``max_messages`` problem lines (main process only)."""
    if not is_main_process():
        return
    if not report.messages:
        logger.info(report.summary(desc))
        return
    logger.warning(report.summary(desc))
    for message in report.messages[:max_messages]:
        logger.warning(message)
    if len(report.messages) > max_messages:
        logger.warning(f"... and {len(report.messages) - max_messages} more problems (see ScanReport.messages)")


def scan_labels(image_paths: list[Path] | list[str], nc: int, *, cache_path: str | Path | None = None,
                progress: bool = True, desc: str = "labels") -> tuple[list[ImageLabels], ScanReport]:
    """Read and check the labels of ``image_paths`` (in order) for a dataset of ``nc`` classes.

    Returns the :class:`ImageLabels` of every usable image (unreadable images are skipped; missing or empty label
    files give background images with zero boxes) and a :class:`ScanReport`. With ``cache_path`` the result is
    loaded from that cache when no image or label file changed (same paths, sizes and mtimes), and written there
    otherwise (main process only, atomically).
    """
    paths = [Path(p) for p in image_paths]
    cache_file = Path(cache_path) if cache_path is not None else None
    files_hash = _files_hash(paths, nc) if cache_file is not None else ""
    if cache_file is not None and (cached := _load_cache(cache_file, files_hash, nc)) is not None:
        log_report(cached[1], desc)
        return cached
    labels: list[ImageLabels] = []
    report = ScanReport(images=len(paths))
    workers = max(1, min(8, os.cpu_count() or 1, len(paths)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda p: _scan_one(p, nc), paths)
        for outcome, item, parsed, message in progress_bar(results, desc=f"Scanning {desc}", total=len(paths),
                                                           enabled=progress, unit="img"):
            setattr(report, outcome, getattr(report, outcome) + 1)
            if message:
                report.messages.append(message)
            if parsed is not None:
                report.bad_rows += parsed.bad_rows
                report.duplicates += parsed.duplicates
                report.messages.extend(parsed.messages)
            if item is not None:
                labels.append(item)
                report.instances += len(item)
    if cache_file is not None and is_main_process():
        _save_cache(cache_file, files_hash, labels, report)
    log_report(report, desc)
    return labels, report
