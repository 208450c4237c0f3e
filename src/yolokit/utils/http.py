"""HTTP(S) plumbing shared by URL sources and weights downloads: the standard library only, every failure a one-line
error of the caller's class (``HTTP 404 for <url>``, a timeout naming the limit, an oversized or short body).

Hostile servers are expected: ``timeout`` bounds the **whole** transfer (connect, headers and body: a watchdog shuts
the socket down when the deadline passes, so a server sending one byte every few seconds cannot stretch it; weights
downloads add time in proportion to the bytes actually received, ``copy_body(min_rate=)``), the body
is read with single socket reads (``read1``), a body shorter than its ``Content-Length`` is an error (the caller
discards it), redirects go to ``http``/``https`` URLs only, and ``http.client`` protocol errors (bad status line,
too many headers, an over-long header line) are one line like every other failure.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import IO, Any

from yolokit.errors import YolokitError

USER_AGENT = "yolokit"
CHUNK = 1 << 16


def is_url(source: object) -> bool:
    """True for a ``str`` that starts with ``http://`` or ``https://`` (case-insensitive)."""
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


class _Deadline:
    """One transfer's deadline: connections made under it register their sockets, which a watchdog thread shuts
    down (waking any blocked read) when the time is up. ``extend(seconds)`` moves the end later (never earlier)."""

    def __init__(self, seconds: float) -> None:
        self.start = time.monotonic()
        self.end = self.start + seconds
        self.sockets: list[socket.socket] = []
        self.expired = False
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def remaining(self) -> float:
        return max(0.001, self.end - time.monotonic())

    def extend(self, seconds_from_start: float) -> None:
        self.end = max(self.end, self.start + seconds_from_start)

    def add(self, sock: Any) -> None:
        with self._lock:
            self.sockets.append(sock)
            if self.expired:
                _shutdown(sock)

    def _watch(self) -> None:
        while not self._done.wait(min(0.25, max(0.0, self.end - time.monotonic()))):
            if time.monotonic() >= self.end:
                with self._lock:
                    self.expired = True
                    for sock in self.sockets:
                        _shutdown(sock)
                return

    def cancel(self) -> None:
        self._done.set()


def _shutdown(sock: Any) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _connection_class(base: type, deadline: _Deadline) -> type:
    class Connection(base):  # type: ignore[misc, valid-type]
        def connect(self) -> None:
            self.timeout = min(self.timeout, deadline.remaining()) if self.timeout else deadline.remaining()
            super().connect()
            deadline.add(self.sock)

    return Connection


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows redirects to ``http``/``https`` URLs only (urllib would also follow ``ftp``)."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        target = urllib.parse.urljoin(req.full_url, newurl)
        if not is_url(target):
            raise urllib.error.URLError(f"redirect to a non-http(s) URL {target[:200]!r} refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    http_class = _connection_class(http.client.HTTPConnection, deadline)
    https_class = _connection_class(http.client.HTTPSConnection, deadline)

    class HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req: Any) -> Any:
            return self.do_open(http_class, req)

    class HTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: Any) -> Any:
            extra = {"check_hostname": self._check_hostname} if hasattr(self, "_check_hostname") else {}
            return self.do_open(https_class, req, context=self._context, **extra)

    return urllib.request.build_opener(HTTPHandler, HTTPSHandler, _RedirectHandler)


@contextlib.contextmanager
def open_url(url: str, timeout: float, error: type[YolokitError], timeout_hint: str = "") -> Iterator[Any]:
    """``urlopen`` whose failures (also those raised while the body is read) become ``error`` with one line.

    ``timeout`` bounds everything done inside the ``with`` block on the response (see the module docstring).
    """
    if not is_url(url):
        raise error(f"expected an http:// or https:// URL; found {url!r}")
    deadline = _Deadline(timeout)
    timed_out = f"timed out after {timeout:g} s fetching {url}{timeout_hint}; check the connection"
    try:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        with _opener(deadline).open(request, timeout=timeout) as response:
            response.yolokit_deadline = deadline
            yield response
    except urllib.error.HTTPError as err:
        raise error(f"HTTP {err.code} for {url} ({' '.join(str(err.reason).split())[:200]}); check the URL") from None
    except urllib.error.URLError as err:
        if isinstance(err.reason, TimeoutError) or deadline.expired:
            raise error(timed_out) from None
        reason = " ".join(str(err.reason).split())[:200]
        raise error(f"cannot fetch {url}: {reason}; check the URL and the network") from None
    except TimeoutError:
        raise error(timed_out) from None
    except (OSError, http.client.HTTPException, ValueError) as err:  # reset, bad status line, too many headers, ...
        if deadline.expired:
            raise error(timed_out) from None
        text = " ".join(str(err).split())[:160]
        reason = f"{type(err).__name__}: {text}" if text else type(err).__name__
        raise error(f"cannot fetch {url}: {reason}; check the URL and the network") from None
    finally:
        deadline.cancel()


def content_length(response: Any) -> int | None:
    """The response's ``Content-Length`` as an int, or None when absent or malformed."""
    length = (response.headers.get("Content-Length") or "").strip()
    return int(length) if length.isdigit() and len(length) < 20 else None


def copy_body(response: Any, out: IO[bytes], too_big: Callable[[str], YolokitError], max_bytes: int,
              on_chunk: Callable[[bytes], None] | None = None, min_rate: float | None = None) -> int:
    """Copy the body to ``out`` in chunks; raise ``too_big(size_text)`` as soon as more than ``max_bytes`` arrive,
    and ``ConnectionError`` (one line through ``open_url``) when the body ends before its ``Content-Length``.

    ``min_rate`` (bytes/s): the transfer may last the ``open_url`` timeout plus the bytes received so far divided
    by ``min_rate`` (a large file on a slow link completes; a server trickling bytes fails after about the timeout).
    Without it the timeout bounds the whole transfer."""
    total, expected = 0, content_length(response)
    read = getattr(response, "read1", None) or response.read
    deadline = getattr(response, "yolokit_deadline", None)
    allowed = deadline.end - deadline.start if deadline is not None else 0.0
    while chunk := read(CHUNK):
        if deadline is not None and deadline.expired:
            raise TimeoutError("deadline passed")
        if deadline is not None and min_rate:
            deadline.extend(allowed + (total + len(chunk)) / min_rate)
        total += len(chunk)
        if total > max_bytes:
            raise too_big(f"more than {max_bytes}")
        out.write(chunk)
        if on_chunk is not None:
            on_chunk(chunk)
    if deadline is not None and deadline.expired:
        raise TimeoutError("deadline passed")
    if expected is not None and total != expected:
        raise ConnectionError(f"the body ended after {total} of its {expected} bytes (Content-Length)")
    return total
