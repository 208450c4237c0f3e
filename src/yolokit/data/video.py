"""Lazy, frame-by-frame video reading with OpenCV (``cv2.VideoCapture``).

Frames are decoded one at a time and never collected, so memory stays constant however long the video is.
Frame numbers are 1-based positions in the video. With ``vid_stride=s`` the frames 1, 1+s, 1+2s, ... are returned
(the first frame is always returned); skipped frames are ``grab()``-ed, not converted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from yolokit.errors import SourceError

logger = logging.getLogger(__name__)


def _open_capture(path: str | Path):  # -> cv2.VideoCapture
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"cannot read video {path}: OpenCV could not open it (corrupt file or unsupported codec); "
                          "check the file plays, or convert it to .mp4")
    from yolokit.data.image import MAX_IMAGE_PIXELS

    width, height = capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)
    if width * height > MAX_IMAGE_PIXELS:  # the container's declared frame size, before any frame is decoded
        capture.release()
        raise SourceError(f"cannot read video {path}: its frames declare {int(width)}x{int(height)} pixels, more "
                          f"than the {MAX_IMAGE_PIXELS} yolokit decodes; downscale it first")  # fmt: skip
    return capture


def video_frame_count(path: str | Path) -> int | None:
    """Total number of frames reported by the container, or ``None`` when unknown (streams, broken headers).

    Opens the file without decoding any frame. The number is the container's claim; a damaged file may end early.
    """
    import cv2

    capture = _open_capture(path)
    try:
        frames = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    finally:
        capture.release()
    return int(frames) if frames and frames > 0 and math.isfinite(frames) else None


def strided_count(frames: int | None, vid_stride: int) -> int | None:
    """Number of frames yielded for a video of ``frames`` frames with ``vid_stride`` (``ceil(frames / stride)``)."""
    return None if frames is None else -(-frames // vid_stride)


def iter_video(path: str | Path, vid_stride: int = 1) -> Iterator[tuple[int, int | None, np.ndarray]]:
    """Yield ``(frame_number, total_frames, image)`` for every ``vid_stride``-th frame, lazily.

    Args:
        path: a video file OpenCV can open.
        vid_stride: keep every n-th frame (1 keeps all).

    Yields:
        frame_number: 1-based position of the frame in the video (1, 1+s, 1+2s, ...).
        total_frames: frames reported by the container (``None`` if unknown).
        image: ``(H, W, 3)`` uint8 BGR.

    Raises:
        SourceError: the file cannot be opened, or no frame at all can be decoded.
    """
    import cv2

    if vid_stride < 1:
        raise SourceError(f"expected vid_stride >= 1; found {vid_stride}; use 1 to keep every frame")
    capture = _open_capture(path)
    try:
        reported = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        total = int(reported) if reported and reported > 0 and math.isfinite(reported) else None
        frame = 0
        while True:
            ok, image = capture.read()
            if not ok or image is None:
                break
            frame += 1
            yield frame, total, _as_bgr(image)
            if not _skip(capture, vid_stride - 1):
                break
            frame += vid_stride - 1
    finally:
        capture.release()
    if frame == 0:
        raise SourceError(f"cannot read video {path}: no frame could be decoded; check the file plays")
    if total is not None and frame + vid_stride - 1 < total:
        logger.debug("video %s ended at frame %d of %d reported", path, frame, total)


def _skip(capture, count: int) -> bool:
    """Advance ``count`` frames without converting them; False when the video ends."""
    for _ in range(count):
        if not capture.grab():
            return False
    return True


def _as_bgr(image: np.ndarray) -> np.ndarray:
    """OpenCV normally returns (H, W, 3) BGR; make gray or BGRA frames (some backends) 3-channel too."""
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3])
    return image
