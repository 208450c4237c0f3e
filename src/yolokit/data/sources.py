"""Predict inputs: every supported source kind -> a lazy iterator of :class:`SourceItem` (BGR uint8 images).

Supported sources: an image or video file path (``str``/``Path``), a directory (its images and videos, not
recursive, in natural order: ``2.jpg`` before ``10.jpg``), a glob pattern (``'data/**/*.jpg'``, natural order), an
``http(s)://`` URL (image or video), a list/tuple of any of these or of in-memory images, a numpy array
(``(H, W, 3)`` BGR, ``(H, W)`` gray, ``(H, W, 4)`` BGRA, or a ``(N, H, W, C)`` stack), a PIL image, and a torch
tensor (``(3, H, W)`` or ``(B, 3, H, W)`` float RGB in ``[0, 1]``).

Conversions to ``(H, W, 3)`` uint8 BGR, the same for files, arrays and PIL images:

- gray -> the value copied to the three channels;
- an alpha channel is dropped (colour channels kept as stored, not composited);
- 16-bit -> ``value >> 8`` (what ``cv2.imread`` does for 16-bit PNG); float files -> ``clip(v, 0, 1) * 255``;
- EXIF orientation of image files is applied (rotated/flipped as the tag says) for every format; PIL images and
  arrays passed in memory are used as they are.

Tensors are converted with ``round(v * 255)`` to BGR uint8 so the pipeline is uniform, and the original
``(3, H, W)`` float RGB tensor is kept in :attr:`SourceItem.tensor`, so a predictor may feed it without the uint8
round trip.

Nothing is decoded before iteration, and decoded images are not kept: iterating a long video or a big folder
uses constant memory. A single image input that cannot be read raises :class:`SourceError`; in a directory, glob,
list or video run a bad file is logged as a warning (also collected in :attr:`Source.warnings`) and skipped.
"""

from __future__ import annotations

import functools
import glob
import itertools
import logging
import os
import re
import sys
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from yolokit.data.image import (
    _check_array,
    _check_tensor,
    apply_orientation,
    array_to_bgr,
    decode_image,
    pil_to_bgr,
    read_image,
    tensor_to_bgr,
)
from yolokit.data.url import IMAGE_SUFFIXES, VIDEO_SUFFIXES, fetch_url, is_url, remove_files, url_suffix
from yolokit.data.video import iter_video, strided_count, video_frame_count
from yolokit.errors import ConfigError, SourceError

__all__ = ["Source", "SourceItem", "apply_orientation", "array_to_bgr", "decode_image", "natural_key", "open_source",
           "pil_to_bgr", "read_image", "tensor_to_bgr"]

logger = logging.getLogger(__name__)

SUPPORTED = ("image or video path, directory, glob pattern, http(s) URL, list/tuple of these, numpy array "
             "(HxWx3 BGR / HxW / HxWx4 uint8), PIL image, torch tensor (CHW/BCHW float RGB in [0,1])")
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass
class SourceItem:
    """One image produced by a :class:`Source`.

    Attributes:
        path: file path, URL, or a generated name (``'image0.jpg'``) for in-memory inputs.
        image: ``(H, W, 3)`` uint8 BGR.
        index: running number of the item in the source (0-based).
        frame: 1-based frame number for video frames, else ``None``.
        frames: total frames the video reports (``None`` if unknown or not a video).
        kind: ``'image' | 'video' | 'array' | 'pil' | 'tensor' | 'url'`` (frames of a video URL are ``'video'``).
        tensor: for ``kind == 'tensor'`` only, the input ``(3, H, W)`` float RGB tensor in ``[0, 1]``.
    """

    path: str
    image: np.ndarray
    index: int
    frame: int | None = None
    frames: int | None = None
    kind: str = "image"
    tensor: Any = None


# ----------------------------------------------------------------------------------------------- image decoding
def natural_key(path: str | Path) -> tuple:
    """Sort key that orders digit runs by value: ``img2.jpg`` < ``img10.jpg`` (case-insensitive, stable)."""
    text = str(path)
    parts = re.split(r"(\d+)", text.lower())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), text


def _media_kind(path: str) -> str | None:
    suffix = path.rsplit(".", 1)[-1].lower() if "." in os.path.basename(path) else ""
    return "video" if suffix in VIDEO_SUFFIXES else "image" if suffix in IMAGE_SUFFIXES else None


def _file_entries(paths: list[str]) -> list[tuple]:
    """Supported files (by suffix), naturally sorted, as ``('image'|'video', path)`` entries."""
    files = sorted((p for p in paths if _media_kind(p) is not None and os.path.isfile(p)), key=natural_key)
    return [(_media_kind(p), p) for p in files]


def _resolve_path(source: str | Path) -> tuple[list[tuple], bool]:
    text = os.path.expanduser(str(source))
    if os.path.isdir(text):
        entries = _file_entries([os.path.join(text, name) for name in os.listdir(text)])
        if not entries:
            raise SourceError(f"no images or videos in directory {text}; supported suffixes: "
                              f"{', '.join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))}")
        return entries, False
    if os.path.isfile(text):
        return [("video" if _media_kind(text) == "video" else "image", text)], _media_kind(text) != "video"
    if _GLOB_CHARS.search(text):
        entries = _file_entries(glob.glob(text, recursive=True))
        if not entries:
            raise SourceError(f"no images or videos match the pattern {text!r}; check the pattern and suffixes")
        return entries, False
    raise SourceError(f"no such file or directory: {text}; pass an existing image, video, directory or glob")


def _resolve_one(source: Any, names: Iterator[int]) -> tuple[list[tuple], bool]:
    """One non-list source -> (entries, single). Entries are ``(kind, payload[, name])`` tuples, nothing decoded."""
    torch = sys.modules.get("torch")
    pil_image = sys.modules.get("PIL.Image")
    if is_url(source):
        return [("url", source)], True
    if isinstance(source, str) and re.match(r"^[a-z][a-z0-9+.-]*://", source, re.IGNORECASE):
        raise SourceError(f"unsupported URL scheme in {source!r}; supported sources: {SUPPORTED}")
    if isinstance(source, (str, Path)):
        return _resolve_path(source)
    if isinstance(source, np.ndarray):
        stack = list(source) if source.ndim == 4 else [source]
        entries = [("array", a, f"image{next(names)}.jpg") for a in stack]
        for _, array, name in entries:
            _check_array(array, name)
        return entries, source.ndim != 4
    if pil_image is not None and isinstance(source, pil_image.Image):
        return [("pil", source, f"image{next(names)}.jpg")], True
    if torch is not None and isinstance(source, torch.Tensor):
        _check_tensor(source)
        stack = list(source) if source.ndim == 4 else [source]
        return [("tensor", t, f"image{next(names)}.jpg") for t in stack], source.ndim == 3
    raise SourceError(f"unsupported source type {type(source).__name__}; supported sources: {SUPPORTED}")


# --------------------------------------------------------------------------------------------------------- Source
class Source:
    """A lazily decoded predict source; iterate it for :class:`SourceItem` objects (see the module docstring).

    Attributes:
        single: True for one still image (path, image URL, array, PIL image, CHW tensor): a read error raises.
            Otherwise (directory, glob, list, video) a bad file is a warning and the run goes on.
        is_video: True when a video is among the inputs (video URLs inside lists are known only once fetched).
        warnings: messages about skipped files, collected while iterating (also logged).
        count: items that iteration will yield, when known without decoding (``None`` otherwise).
    """

    def __init__(self, source: Any, *, vid_stride: int = 1, url_timeout: float = 10.0,
                 url_max_bytes: int = 50 * 2**20) -> None:
        if not isinstance(vid_stride, int) or isinstance(vid_stride, bool) or vid_stride < 1:
            raise ConfigError(f"expected vid_stride to be an integer >= 1; found {vid_stride!r}; use vid_stride=1")
        self.vid_stride = vid_stride
        self.url_timeout = float(url_timeout)
        self.url_max_bytes = int(url_max_bytes)
        self.warnings: list[str] = []
        self._tempfiles: list[Path] = []
        self._finalizer = weakref.finalize(self, remove_files, self._tempfiles)
        names = itertools.count()
        if isinstance(source, (list, tuple)):
            if not source:
                raise SourceError(f"expected a non-empty list of sources; found an empty {type(source).__name__}")
            self._entries = [e for element in source for e in _resolve_one(element, names)[0]]
            self.single = False
        else:
            self._entries, self.single = _resolve_one(source, names)
            if self._entries[0][0] == "url":  # fetch a lone URL now, so kind, count and errors are known up front
                self._entries = self._fetch_entry(source)
                self.single = self._entries[0][0] == "bytes"
        self.is_video = any(e[0] == "video" or (e[0] == "url" and url_suffix(e[1]) in VIDEO_SUFFIXES)
                            for e in self._entries)

    def _fetch_entry(self, url: str) -> list[tuple]:
        fetched = fetch_url(url, timeout=self.url_timeout, max_bytes=self.url_max_bytes)
        if fetched.kind == "image":
            return [("bytes", url, fetched.data)]
        self._tempfiles.append(fetched.path)
        return [("video", str(fetched.path), url)]

    @property
    def num_inputs(self) -> int:
        """Number of inputs (files, URLs, arrays) before videos are expanded into frames."""
        return len(self._entries)

    @functools.cached_property
    def count(self) -> int | None:
        """Number of items: one per image + ``ceil(frames / vid_stride)`` per video (opens videos, decodes none)."""
        total = 0
        for entry in self._entries:
            if entry[0] == "video":
                try:
                    n = strided_count(video_frame_count(entry[1]), self.vid_stride)
                except SourceError:
                    n = 0  # an unreadable video yields nothing (a warning when iterated)
                if n is None:
                    return None
                total += n
            elif entry[0] == "url" and url_suffix(entry[1]) in VIDEO_SUFFIXES:
                return None
            else:
                total += 1
        return total

    def __len__(self) -> int:
        if self.count is None:
            raise TypeError("the number of items of this source is not known before decoding")
        return self.count

    def __iter__(self) -> Iterator[SourceItem]:
        index = itertools.count()
        failures = produced = 0
        for entry in self._entries:
            try:
                for item in self._expand(entry, index):
                    produced += 1
                    yield item
            except SourceError as err:
                if self.single:
                    raise
                failures += 1
                message = f"skipped: {err}"
                self.warnings.append(message)
                logger.warning(message)
        if produced == 0 and failures:
            raise SourceError(f"no readable image in the source: all {failures} input(s) failed; "
                              f"first problem: {self.warnings[-failures]}")

    def _expand(self, entry: tuple, index: Iterator[int]) -> Iterator[SourceItem]:
        kind = entry[0]
        if kind == "image":
            yield SourceItem(entry[1], read_image(entry[1]), next(index), kind="image")
        elif kind == "bytes":
            yield SourceItem(entry[1], decode_image(entry[2], entry[1]), next(index), kind="url")
        elif kind == "array":
            yield SourceItem(entry[2], array_to_bgr(entry[1], entry[2]), next(index), kind="array")
        elif kind == "pil":
            yield SourceItem(entry[2], pil_to_bgr(entry[1]), next(index), kind="pil")
        elif kind == "tensor":
            yield SourceItem(entry[2], tensor_to_bgr(entry[1]), next(index), kind="tensor", tensor=entry[1])
        elif kind == "video":
            name = entry[2] if len(entry) > 2 else entry[1]
            for frame, frames, image in iter_video(entry[1], self.vid_stride):
                yield SourceItem(name, image, next(index), frame=frame, frames=frames, kind="video")
        elif kind == "url":
            fetched = self._fetch_entry(entry[1])
            try:
                yield from self._expand(fetched[0], index)
            finally:
                if fetched[0][0] == "video":
                    self._tempfiles.remove(Path(fetched[0][1]))
                    remove_files([Path(fetched[0][1])])
        else:
            raise AssertionError(f"unknown source entry kind {kind}")

    def close(self) -> None:
        """Delete temporary files (downloaded videos). Also runs when the Source is garbage-collected."""
        self._finalizer()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Source({len(self._entries)} input(s), single={self.single}, is_video={self.is_video})"


def open_source(source: Any, **kwargs: Any) -> Source:
    """Build a :class:`Source` (``vid_stride``, ``url_timeout``, ``url_max_bytes`` keywords)."""
    if isinstance(source, Source):
        return source
    return Source(source, **kwargs)
