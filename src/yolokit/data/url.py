"""Fetch predict inputs from http(s) URLs with the standard library (no ``requests``).

Every fetch has a timeout, a size cap and a Content-Type check:

- ``image/*`` -> the body is returned as bytes (decoded by ``sources.decode_image``);
- ``video/*`` -> the body is streamed to a temporary file that is read as a video (the caller deletes it);
- no Content-Type, ``application/octet-stream`` or ``binary/octet-stream`` -> decided by the URL path suffix
  (``.jpg`` -> image, ``.mp4`` -> video); anything else (``text/html``, ``application/json``, ...) is refused.

Failures are :class:`~yolokit.errors.SourceError` with one-line messages: ``HTTP 404 for <url>``, a timeout naming
the limit, a body larger than ``max_bytes``, or the unexpected Content-Type found.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from yolokit.errors import SourceError
from yolokit.utils.http import content_length, copy_body, is_url, open_url

__all__ = ["FetchedURL", "fetch_url", "is_url", "remove_files", "url_suffix"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(
    "bmp dib jpg jpeg jpe jp2 png webp tif tiff pbm pgm ppm pnm pfm sr ras exr hdr gif mpo heic heif avif".split()
)
VIDEO_SUFFIXES = frozenset("asf avi m4v mkv mov mp4 mpeg mpg ts m2ts mts wmv webm flv 3gp ogv".split())
_GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream"}


@dataclass
class FetchedURL:
    """A downloaded URL: ``kind`` is ``'image'`` (``data`` holds the bytes) or ``'video'`` (``path`` is a temporary
    file the caller must delete)."""

    url: str
    kind: str
    content_type: str
    data: bytes | None = None
    path: Path | None = None


def url_suffix(url: str) -> str:
    """Lower-case file suffix of the URL path without the dot (``'https://x/a.JPG?s=1'`` -> ``'jpg'``)."""
    path = urllib.parse.urlsplit(url).path
    name = path.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def _kind_for(url: str, content_type: str) -> str:
    """Map a response Content-Type (main type, lower-case) to ``'image'`` or ``'video'``, or raise."""
    if content_type.startswith("image/"):
        return "image"
    if content_type.startswith("video/"):
        return "video"
    suffix = url_suffix(url)
    if content_type in _GENERIC_TYPES and suffix in IMAGE_SUFFIXES:
        return "image"
    if content_type in _GENERIC_TYPES and suffix in VIDEO_SUFFIXES:
        return "video"
    found = content_type or "none"
    raise SourceError(
        f"expected an image/* or video/* response from {url}; got Content-Type {found}; "
        "use a URL that points at the image or video file itself"
    )


def _too_big(url: str, size: int | str, max_bytes: int) -> SourceError:
    return SourceError(f"refusing {url}: body of {size} bytes exceeds url_max_bytes={max_bytes}; "
                       "raise url_max_bytes or download the file and pass its path")


def fetch_url(url: str, *, timeout: float = 10.0, max_bytes: int = 50 * 2**20) -> FetchedURL:
    """Download ``url`` (image bytes in memory, or a video to a temporary file).

    Args:
        url: an ``http://`` or ``https://`` URL.
        timeout: seconds allowed for the whole transfer (connection, headers and body).
        max_bytes: largest body accepted; refused up front when ``Content-Length`` is larger, and reading stops as
            soon as the body grows past it.

    Returns:
        :class:`FetchedURL`; for ``kind == 'video'`` the caller owns (and must delete) ``path``.
    """
    too_big = lambda size: _too_big(url, size, max_bytes)  # noqa: E731
    with open_url(url, timeout, SourceError, f" (url_timeout={timeout:g})") as response:
        content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        kind = _kind_for(url, content_type)
        length = content_length(response)
        if length is not None and length > max_bytes:
            raise too_big(length)
        if kind == "image":
            buffer = io.BytesIO()
            copy_body(response, buffer, too_big, max_bytes)
            return FetchedURL(url, kind, content_type, data=buffer.getvalue())
        suffix = url_suffix(url)
        fd, name = tempfile.mkstemp(prefix="yolokit-url-", suffix=f".{suffix if suffix in VIDEO_SUFFIXES else 'mp4'}")
        try:
            with os.fdopen(fd, "wb") as handle:
                size = copy_body(response, handle, too_big, max_bytes)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            raise
    logger.debug("downloaded %s (%d bytes, %s) to %s", url, size, content_type, name)
    return FetchedURL(url, kind, content_type, path=Path(name))



def remove_files(paths: list[Path]) -> None:
    """Delete temporary download files, ignoring those already gone."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
