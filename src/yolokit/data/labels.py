"""YOLO-format labels of a dataset: scan every image's label file, report each problem, cache the result.

:func:`scan_labels` checks every row of every label file (:mod:`yolokit.data.label_files`: the file format, the
path of an image's label file, image sizes read from headers) and reports each bad one as ``file:line: reason``
(the row is skipped, the rest of the file kept). A missing or empty label file means a background image (kept).
With a cache path the result is kept in an ``.npz`` archive (:mod:`yolokit.data.label_cache`), so a second scan of
unchanged files reads nothing.

The names of the label modules are importable from here (``from yolokit.data.labels import ImageLabels,
label_path_for, parse_label_file, read_image_shape, ScanReport``).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from yolokit.data.label_cache import CACHE_VERSION, cache_key, load_cache, save_cache
from yolokit.data.label_files import (
    COORD_TOLERANCE,
    IMG_SUFFIXES,
    MAX_LABEL_BYTES,
    ImageLabels,
    ParsedLabels,
    ScanReport,
    label_path_for,
    parse_label_file,
    read_image_shape,
)
from yolokit.utils.dist import is_main_process
from yolokit.utils.progress import progress as progress_bar

__all__ = ["CACHE_VERSION", "COORD_TOLERANCE", "IMG_SUFFIXES", "MAX_LABEL_BYTES", "MAX_LOGGED_MESSAGES", "ImageLabels",
           "ParsedLabels", "ScanReport", "label_path_for", "log_report", "parse_label_file", "read_image_shape",
           "scan_labels"]

logger = logging.getLogger(__name__)

MAX_LOGGED_MESSAGES = 10


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
    key = cache_key(paths, nc) if cache_file is not None else ""
    if cache_file is not None and (cached := load_cache(cache_file, key, nc)) is not None:
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
        save_cache(cache_file, key, labels, report)
    log_report(report, desc)
    return labels, report
