"""Class 4: downloads from a hostile server (a raw socket on 127.0.0.1, no network) fail cleanly and cache nothing."""

import time

import pytest
from hostile_server import hostile_server, redirect_to, short_body, slow_headers, trickle

from yolokit.errors import SourceError, WeightsError
from yolokit.weights.download import download_weights


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLOKIT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "weights"


def test_body_shorter_than_content_length_fails_and_caches_nothing(cache):
    with hostile_server(short_body) as base:
        for _ in range(2):  # the second attempt must not find a half file to reuse
            with pytest.raises(WeightsError, match="100 of its 1000 bytes"):
                download_weights(f"{base}/w.pt", progress=False)
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize("behaviour", [trickle, slow_headers], ids=["body", "headers"])
def test_timeout_bounds_the_whole_transfer(behaviour, cache):
    from yolokit.data.url import fetch_url

    with hostile_server(behaviour) as base:
        start = time.monotonic()
        with pytest.raises(WeightsError, match="timed out after 1.5 s"):
            download_weights(f"{base}/w.pt", timeout=1.5, progress=False)
        assert time.monotonic() - start < 4.0  # one byte every 0.5 s would take 50 s read by read
        start = time.monotonic()
        with pytest.raises(SourceError, match="url_timeout=1.5"):
            fetch_url(f"{base}/a.jpg", timeout=1.5)
        assert time.monotonic() - start < 4.0
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize("target", ["ftp://127.0.0.1/w.pt", "file:///etc/passwd"])
def test_redirects_go_to_http_only(target, cache):
    with hostile_server(redirect_to(target)) as base, pytest.raises(WeightsError) as error:
        download_weights(f"{base}/w.pt", progress=False)
    assert target.split(":")[0] in str(error.value) and "\n" not in str(error.value)
    assert list(cache.iterdir()) == []


def test_redirect_to_http_is_followed(tmp_path):
    payload = b"weights-bytes"

    def serve(conn, path):
        if path == "/w.pt":
            conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /real.pt\r\nContent-Length: 0\r\n\r\n")
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload)

    with hostile_server(serve) as base:
        path = download_weights(f"{base}/w.pt", dest=tmp_path / "w.pt", progress=False)
    assert path.read_bytes() == payload


def test_a_steady_download_may_outlast_the_timeout(tmp_path):
    """Weights downloads may last ``timeout`` + bytes / MIN_RATE: 400 KB at ~200 KB/s over ~2 s with timeout=1
    completes, while the trickling server above is cut after about the timeout."""
    payload = bytes(range(256)) * 1600  # 409600 bytes

    def steady(conn, path):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(payload))
        for start in range(0, len(payload), 40960):
            time.sleep(0.2)
            conn.sendall(payload[start:start + 40960])

    with hostile_server(steady) as base:
        start = time.monotonic()
        path = download_weights(f"{base}/w.pt", dest=tmp_path / "w.pt", timeout=1.0, progress=False)
    assert path.read_bytes() == payload and time.monotonic() - start > 1.5
