"""INT8 calibration images: which images, their fingerprint, and the reader ONNX Runtime's calibrator consumes.

- :func:`select_calibration_images`: ``count`` images (default 300) of a dataset split (default ``train``), spread
  evenly over the sorted file list (deterministic). Fewer than :data:`RECOMMENDED_IMAGES` available or asked for
  logs a loud warning, which the exported file records too (``CalibrationSet.warning``).
- The set's fingerprint ``sha256`` is the SHA-256 of the sorted per-image SHA-256 hex digests joined by newlines
  (independent of paths and order, so the same pictures anywhere give the same hash).
- :class:`CalibrationReader`: yields ``{"images": (1, 3, H, W) float32 RGB in [0, 1]}`` letterboxed exactly as
  inference does for a fixed-size graph (:func:`yolokit.data.transforms.letterbox` with ``auto=False``, then
  :func:`yolokit.data.transforms.to_input_tensor`). It has the ``get_next`` / ``rewind`` surface ORT expects and
  can be limited to a chunk of images (``set_range``), so calibration memory stays bounded. A classifier's images
  go through the caller's ``preprocess`` instead (its eval crop and normalisation).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolokit.errors import ConfigError, DatasetError

__all__ = ["CalibrationSet", "CalibrationReader", "select_calibration_images", "calibration_hash",
           "RECOMMENDED_IMAGES", "INPUT_NAME"]

RECOMMENDED_IMAGES = 300  # NNCF / OpenVINO's recommendation for post-training quantization
INPUT_NAME = "images"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrationSet:
    """The calibration images and their fingerprint.

    Attributes:
        paths: the image files, sorted.
        sha256: fingerprint of the set (see the module docstring).
        split: the dataset split they come from.
        data: the dataset YAML.
        warning: the warning logged for a small set ("" when the set is large enough).
    """

    paths: tuple[Path, ...]
    sha256: str
    split: str
    data: str
    warning: str = ""

    @property
    def count(self) -> int:
        return len(self.paths)

    def as_metadata(self) -> dict[str, Any]:
        """What the exported file records about its calibration."""
        return {"images": self.count, "sha256": self.sha256, "split": self.split, "data": self.data,
                "warning": self.warning}


def calibration_hash(paths: Sequence[str | Path]) -> str:
    """SHA-256 over the sorted SHA-256 hex digests of the files' bytes, one per line."""
    from yolokit.utils.io import sha256_file

    digests = sorted(sha256_file(path) for path in paths)
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def _split_files(data: str | Path, split: str, task: str) -> tuple[list[Path], list[str]]:
    """(the image files of ``split``, the splits the dataset has): a detection data YAML, or for ``task='classify'``
    a class-folder dataset (folder or YAML)."""
    if task == "classify":
        from yolokit.data.classify import load_classify_data, scan_split

        classify = load_classify_data(data)
        files = [Path(path) for path, _ in scan_split(classify, split)] if split in classify.splits else []
        return files, sorted(classify.splits)
    from yolokit.data.dataset import load_data_config

    config = load_data_config(data)
    return list(config.splits.get(split) or []), sorted(config.splits)


def select_calibration_images(data: str | Path, count: int = RECOMMENDED_IMAGES, split: str = "train", *,
                              task: str = "detect") -> CalibrationSet:
    """``count`` images of ``split`` of the dataset ``data`` (a data YAML; a class-folder dataset for
    ``task='classify'``), evenly spaced over its sorted files.

    Raises:
        ConfigError: ``count`` < 1.
        DatasetError: the split is missing or empty.
    """
    if count < 1:
        raise ConfigError(f"calib_images must be >= 1, got {count}: pass e.g. calib_images=300")
    found, splits = _split_files(data, split, task)
    files = sorted(found)
    if not files:
        known = ", ".join(splits) or "none"
        raise DatasetError(f"dataset {data} has no '{split}' images for INT8 calibration (splits: {known}): add "
                           f"the split or pass calib_split=<split>")
    if len(files) > count:
        step = len(files) / count
        files = [files[int(k * step)] for k in range(count)]
    warning = ""
    if len(files) < RECOMMENDED_IMAGES:
        warning = (f"INT8 calibration on {len(files)} images (fewer than the recommended {RECOMMENDED_IMAGES}): "
                   "the activation ranges may not represent the data; pass more images (calib_images=300)")
        logger.warning("WARNING: %s", warning)
    return CalibrationSet(tuple(files), calibration_hash(files), split, str(data), warning)


class CalibrationReader:
    """ONNX Runtime calibration data reader over image files (see the module docstring).

    Args:
        paths: image files.
        shape_hw: the graph's input size ``(H, W)``.
        stride: the model's largest stride (letterbox argument).
        preprocess: instead of the letterbox, ``image (h, w, 3) BGR uint8 -> (1, 3, H, W) float32`` (a
            classifier's resize + centre crop + normalisation, given by the caller).
    """

    def __init__(self, paths: Sequence[str | Path], shape_hw: tuple[int, int], stride: int = 32,
                 preprocess: Callable[[Any], Any] | None = None) -> None:
        self.paths = list(paths)
        self.shape_hw = (int(shape_hw[0]), int(shape_hw[1]))
        self.stride = int(stride)
        self.preprocess = preprocess
        self._start, self._end, self._next = 0, len(self.paths), 0

    def __len__(self) -> int:
        return len(self.paths)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Limit the reader to images ``start_index .. end_index - 1`` and rewind."""
        self._start, self._end = max(0, start_index), min(len(self.paths), end_index)
        self._next = self._start

    def rewind(self) -> None:
        self._next = self._start

    def get_next(self) -> dict[str, Any] | None:
        """The next ``{"images": (1, 3, H, W) float32}``, or None at the end."""
        if self._next >= self._end:
            return None
        path = self.paths[self._next]
        self._next += 1
        return {INPUT_NAME: self.load(path)}

    def load(self, path: str | Path) -> Any:
        """One image as the graph input: ``(1, 3, H, W)`` float32 RGB in [0, 1], letterboxed to ``shape_hw``."""
        from yolokit.data.sources import read_image
        from yolokit.data.transforms import letterbox, to_input_tensor

        try:
            image = read_image(str(path))
        except Exception as error:  # noqa: BLE001 - report the file in one line
            raise DatasetError(f"cannot read calibration image {path} ({error}): remove it from the split") \
                from error
        if self.preprocess is not None:
            return self.preprocess(image)
        padded, _, _ = letterbox(image, self.shape_hw, auto=False, stride=self.stride)
        return to_input_tensor([padded]).numpy()
