"""The label cache: one scan's labels and report in an ``.npz`` archive (no pickle), keyed by a hash of the files.

The key (:func:`cache_key`) hashes the path, size and modification time of every image and label file, so a
second scan of unchanged files reads nothing. A cache is input too: :func:`load_cache` ignores (with a warning) one
that is compressed, declares arrays larger than it holds, or holds values a scan could not have written (class ids
outside ``[0, nc)``, NaN or out-of-range boxes), and the labels are then scanned again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from yolokit.data.label_files import COORD_TOLERANCE, ImageLabels, ScanReport, label_path_for
from yolokit.utils.io import atomic_open

logger = logging.getLogger(__name__)

CACHE_VERSION = 1


def cache_key(image_paths: list[Path], nc: int) -> str:
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


def save_cache(cache_path: Path, key: str, labels: list[ImageLabels], report: ScanReport) -> None:
    """Write the scan to ``cache_path`` (npz, no pickle) atomically; an unwritable place only warns."""
    counts = {k: getattr(report, k) for k in ("images", "found", "missing", "empty", "corrupt", "bad_rows",
                                              "duplicates", "instances")}
    arrays = {
        "meta": np.array(json.dumps({"version": CACHE_VERSION, "hash": key, "counts": counts})),
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


def load_cache(cache_path: Path, key: str, nc: int) -> tuple[list[ImageLabels], ScanReport] | None:
    """Labels and report from ``cache_path`` when it exists, is readable and was written for ``key``
    (:func:`cache_key` of the same files); else None."""
    if not cache_path.is_file():
        return None
    try:
        _check_npz_sizes(cache_path)
        with np.load(cache_path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["meta"]))
            if meta.get("version") != CACHE_VERSION or meta.get("hash") != key:
                logger.info(f"Label cache {cache_path} is out of date; scanning again")
                return None
            data = {name: archive[name] for name in ("im_files", "shapes", "counts", "cls", "bboxes", "messages")}
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
