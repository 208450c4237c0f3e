"""URL sources against a local http.server on 127.0.0.1 (no network): images, videos, errors, limits."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolokit.data.sources import open_source
from yolokit.data.url import fetch_url, url_suffix
from yolokit.errors import SourceError

PNG_BGR = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [1, 2, 3]]], np.uint8)
PNG_BYTES = cv2.imencode(".png", PNG_BGR)[1].tobytes()


def make_video_bytes(tmp_dir: Path, frames: int = 6) -> bytes:
    path = tmp_dir / "v.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    for n in range(frames):
        writer.write(np.full((24, 32, 3), n * 30, np.uint8))
    writer.release()
    return path.read_bytes()


class Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, str | None, bytes, bool]] = {}  # path -> (status, content type, body, length?)

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        if self.path == "/slow.png":
            time.sleep(1.5)
        status, content_type, body, send_length = self.routes.get(self.path, (404, "text/plain", b"missing", True))
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        if send_length:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.send_header("Connection", "close")  # body ends when the connection closes
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args: object) -> None:  # keep the test output quiet
        return


class _QuietServer(ThreadingHTTPServer):
    """Clients that hang up early (timeout and size-cap tests) are expected: no traceback for those."""

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    video = make_video_bytes(tmp_path_factory.mktemp("v"))
    Handler.routes = {
        "/img.png": (200, "image/png", PNG_BYTES, True),
        "/img2.png?x=1": (200, "image/png; charset=binary", PNG_BYTES, True),
        "/slow.png": (200, "image/png", PNG_BYTES, True),
        "/page.html": (200, "text/html; charset=utf-8", b"<html>hello</html>", True),
        "/big.png": (200, "image/png", PNG_BYTES + bytes(5000), True),
        "/big-nolength.png": (200, "image/png", PNG_BYTES + bytes(5000), False),
        "/blob.jpg": (200, "application/octet-stream", PNG_BYTES, True),
        "/blob": (200, "application/octet-stream", PNG_BYTES, True),
        "/clip.avi": (200, "video/x-msvideo", video, True),
        "/corrupt.jpg": (200, "image/jpeg", b"\xff\xd8 broken", True),
    }
    httpd = _QuietServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.block_on_close = False
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_png_url(server):
    source = open_source(f"{server}/img.png")
    assert source.single and not source.is_video and source.count == 1
    items = list(source)
    assert len(items) == 1 and items[0].kind == "url" and items[0].path == f"{server}/img.png"
    np.testing.assert_array_equal(items[0].image, PNG_BGR)


def test_content_type_parameters_and_octet_stream_with_image_suffix(server):
    np.testing.assert_array_equal(next(iter(open_source(f"{server}/img2.png?x=1"))).image, PNG_BGR)
    np.testing.assert_array_equal(next(iter(open_source(f"{server}/blob.jpg"))).image, PNG_BGR)
    with pytest.raises(SourceError, match="application/octet-stream"):
        open_source(f"{server}/blob")


def test_404(server):
    with pytest.raises(SourceError, match=rf"HTTP 404 for {server}/nothing-here\.png"):
        open_source(f"{server}/nothing-here.png")


def test_timeout(server):
    start = time.perf_counter()
    with pytest.raises(SourceError, match=r"timed out after 0\.5 s .*slow\.png"):
        open_source(f"{server}/slow.png", url_timeout=0.5)
    assert time.perf_counter() - start < 1.4  # gave up at the timeout, did not wait for the 1.5 s reply


def test_html_is_refused_naming_url_and_type(server):
    with pytest.raises(SourceError, match=rf"{server}/page\.html; got Content-Type text/html"):
        open_source(f"{server}/page.html")


def test_size_cap_from_content_length_and_while_reading(server):
    with pytest.raises(SourceError, match=r"5\d\d\d bytes exceeds url_max_bytes=1000"):
        open_source(f"{server}/big.png", url_max_bytes=1000)
    with pytest.raises(SourceError, match=r"more than 1000 bytes exceeds url_max_bytes=1000"):
        fetch_url(f"{server}/big-nolength.png", max_bytes=1000)
    assert len(fetch_url(f"{server}/big-nolength.png").data) == len(PNG_BYTES) + 5000  # under the default cap


def test_video_url_downloads_to_temp_file_and_cleans_up(server):
    source = open_source(f"{server}/clip.avi", vid_stride=2)
    assert source.is_video and not source.single and source.count == 3
    temp = Path(source._entries[0][1])
    assert temp.is_file()
    items = list(source)
    assert [(i.kind, i.frame, i.frames, i.path) for i in items] == [
        ("video", n, 6, f"{server}/clip.avi") for n in (1, 3, 5)]
    assert [round(float(i.image.mean()) / 30) for i in items] == [0, 2, 4]  # frames 1, 3, 5 painted 0, 60, 120
    source.close()
    assert not temp.exists()


def test_urls_in_a_list_are_fetched_lazily_and_failures_warn(server):
    source = open_source([f"{server}/img.png", f"{server}/missing.png", f"{server}/clip.avi", f"{server}/corrupt.jpg"])
    assert source.count is None  # a video URL: its frame count is unknown until downloaded
    items = list(source)
    assert [i.kind for i in items] == ["url"] + ["video"] * 6
    assert len(source.warnings) == 2
    assert "HTTP 404" in source.warnings[0] and "corrupt.jpg" in source.warnings[1]
    assert source._tempfiles == []  # the downloaded video was removed once read


def test_corrupt_image_url_is_an_error(server):
    with pytest.raises(SourceError, match=r"cannot read image .*corrupt\.jpg"):
        list(open_source(f"{server}/corrupt.jpg"))


def test_connection_refused_and_url_suffix():
    with pytest.raises(SourceError, match="cannot fetch http://127.0.0.1:9/x.png"):
        fetch_url("http://127.0.0.1:9/x.png", timeout=2)
    assert url_suffix("https://host/a/b.JPG?size=2#top") == "jpg" and url_suffix("https://host/dir/") == ""
