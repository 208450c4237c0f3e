"""HTTP(S) plumbing shared by URL sources and weights downloads: the standard library only, every failure a one-line
error of the caller's class (``HTTP 404 for <url>``, a timeout naming the limit, an oversized body)."""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import IO, Any

from yolokit.errors import YolokitError

USER_AGENT = "yolokit"
CHUNK = 1 << 16


def is_url(source: object) -> bool:
    """True for a ``str`` that starts with ``http://`` or ``https://`` (case-insensitive)."""
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


@contextlib.contextmanager
def open_url(url: str, timeout: float, error: type[YolokitError], timeout_hint: str = "") -> Iterator[Any]:
    """``urlopen`` whose failures (also those raised while the body is read) become ``error`` with one line."""
    if not is_url(url):
        raise error(f"expected an http:// or https:// URL; found {url!r}")
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    timed_out = f"timed out after {timeout:g} s fetching {url}{timeout_hint}; check the connection"
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            yield response
    except urllib.error.HTTPError as err:
        raise error(f"HTTP {err.code} for {url} ({err.reason}); check the URL") from None
    except urllib.error.URLError as err:
        if isinstance(err.reason, TimeoutError):
            raise error(timed_out) from None
        raise error(f"cannot fetch {url}: {err.reason}; check the URL and the network") from None
    except TimeoutError:
        raise error(timed_out) from None
    except OSError as err:  # connection reset, incomplete read, ...
        raise error(f"cannot fetch {url}: {err}; check the URL and the network") from None


def content_length(response: Any) -> int | None:
    """The response's ``Content-Length`` as an int, or None when absent or malformed."""
    length = (response.headers.get("Content-Length") or "").strip()
    return int(length) if length.isdigit() else None


def copy_body(response: Any, out: IO[bytes], too_big: Callable[[str], YolokitError], max_bytes: int,
              on_chunk: Callable[[bytes], None] | None = None) -> int:
    """Copy the body to ``out`` in chunks; raise ``too_big(size_text)`` as soon as more than ``max_bytes`` arrive."""
    total = 0
    while chunk := response.read(CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise too_big(f"more than {max_bytes}")
        out.write(chunk)
        if on_chunk is not None:
            on_chunk(chunk)
    return total
