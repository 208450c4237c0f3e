"""Cached, verified downloads of weights files.

    path = download_weights("https://example.org/best.pt", sha256="ab12...")   # -> ~/.cache/yolokit/weights/best.pt

Files land in ``$YOLOKIT_CACHE_DIR/weights`` (default ``~/.cache/yolokit/weights``) through a temporary file that is
renamed into place only when complete (and, with ``sha256``, only when the digest matches), so an interrupted or
tampered download never leaves a file that looks finished. A cached file is reused (re-verified when ``sha256`` is
given). Only the main rank downloads; other ranks wait for the file to appear.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import time
import urllib.parse
from pathlib import Path

from yolokit.errors import WeightsError
from yolokit.utils.dist import is_main_process
from yolokit.utils.http import content_length, copy_body, open_url
from yolokit.utils.io import cache_root, sha256_file

LOGGER = logging.getLogger(__name__)
MAX_DOWNLOAD_BYTES = 4 * 2**30
MIN_RATE = 64 * 1024  # bytes/s: a download may last `timeout` + (bytes received) / MIN_RATE, then it is cut


def cache_dir() -> Path:
    """Folder of downloaded weights: ``$YOLOKIT_CACHE_DIR/weights`` or ``~/.cache/yolokit/weights``."""
    return cache_root() / "weights"


def download_weights(url: str, *, sha256: str | None = None, dest: str | Path | None = None, timeout: float = 30.0,
                     max_bytes: int = MAX_DOWNLOAD_BYTES, progress: bool = True, wait_seconds: float = 600.0) -> Path:
    """Fetch ``url`` into the cache (or ``dest``) unless a good copy is there, and return the file's path.

    ``timeout`` bounds the connection, the headers and any stall; the whole transfer may last ``timeout`` plus the
    bytes received divided by ``MIN_RATE`` (64 KB/s), so a slow link completes and a trickling server is cut off.
    A body shorter than its ``Content-Length`` fails; nothing but a complete (and, with ``sha256``, verified) file
    is ever renamed into the cache."""
    name = Path(urllib.parse.urlsplit(url).path).name or "weights.pt"
    target = Path(dest) if dest is not None else cache_dir() / name
    if target.is_file() and _verified(target, sha256):
        LOGGER.info("Using cached weights %s", target)
        return target
    if not is_main_process():
        return _wait_for(target, sha256, wait_seconds)
    target.parent.mkdir(parents=True, exist_ok=True)
    LOGGER.info("Downloading %s to %s", url, target)
    digest = _fetch(url, target, timeout, max_bytes, progress, sha256)
    LOGGER.info("Downloaded %s (sha256 %s)", target.name, digest)
    return target


def _verified(path: Path, sha256: str | None) -> bool:
    if sha256 is None:
        return True
    found = sha256_file(path)
    if found != sha256.lower():
        LOGGER.warning("Cached %s has sha256 %s, expected %s: downloading it again", path, found, sha256)
        return False
    return True


def _fetch(url: str, target: Path, timeout: float, max_bytes: int, progress: bool, sha256: str | None) -> str:
    """Stream ``url`` into a temporary file beside ``target``; check size and digest; rename it into place."""
    too_big = lambda size: WeightsError(  # noqa: E731
        f"refusing {url}: {size} bytes exceeds the {max_bytes}-byte download limit")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    hasher = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as handle, open_url(url, timeout, WeightsError) as response:
            length = content_length(response)
            if length is not None and length > max_bytes:
                raise too_big(length)
            with _bar(progress, length, target.name) as bar:
                copy_body(response, handle, too_big, max_bytes, min_rate=MIN_RATE,
                          on_chunk=lambda chunk: (hasher.update(chunk), bar.update(len(chunk))))
            handle.flush()
            os.fsync(handle.fileno())
        digest = hasher.hexdigest()
        if sha256 is not None and digest != sha256.lower():
            raise WeightsError(f"download of {url} has sha256 {digest}, expected {sha256}: the file was discarded; "
                               "check the URL or the pinned digest")
        os.replace(tmp, target)
        return digest
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


class _NoBar:
    def update(self, n: int) -> None:
        """No progress display."""


@contextlib.contextmanager
def _bar(enabled: bool, total: int | None, name: str):
    if not enabled:
        yield _NoBar()
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, leave=False) as bar:
        yield bar


def _wait_for(target: Path, sha256: str | None, wait_seconds: float) -> Path:
    """Non-main ranks: wait until the main rank has put a verified file in place."""
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if target.is_file() and _verified(target, sha256):
            return target
        time.sleep(0.5)
    raise WeightsError(f"waited {wait_seconds:g} s for rank 0 to download {target.name}; check rank 0's log")
