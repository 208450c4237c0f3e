"""Cached, verified weights downloads and published names, against a local HTTP server on 127.0.0.1."""

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from yolokit import YOLO
from yolokit.errors import WeightsError
from yolokit.models.zoo import WeightsEntry, get_entry, list_entries, register
from yolokit.weights.download import download_weights

FIXTURE = Path(__file__).parents[1] / "fixtures" / "yolo26-tiny-shapes.pt"


@pytest.fixture()
def server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1; yields (base_url, request_log)."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "yolo26n.pt").write_bytes(FIXTURE.read_bytes())
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):  # noqa: N802
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLOKIT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "weights"


def test_download_is_cached_and_verified(server, cache):
    base, requests = server
    digest = hashlib.sha256(FIXTURE.read_bytes()).hexdigest()
    path = download_weights(f"{base}/yolo26n.pt", sha256=digest, progress=False)
    assert path == cache / "yolo26n.pt" and path.read_bytes() == FIXTURE.read_bytes()
    assert download_weights(f"{base}/yolo26n.pt", sha256=digest, progress=False) == path
    assert requests == ["/yolo26n.pt"]  # the second call used the cache


def test_digest_mismatch_discards_the_file(server, cache):
    base, _ = server
    with pytest.raises(WeightsError, match="has sha256 [0-9a-f]{64}, expected 0{64}: the file was discarded"):
        download_weights(f"{base}/yolo26n.pt", sha256="0" * 64, progress=False)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_http_error_and_size_limit(server):
    base, _ = server
    with pytest.raises(WeightsError, match=f"HTTP 404 for {base}/missing.pt"):
        download_weights(f"{base}/missing.pt", progress=False)
    with pytest.raises(WeightsError, match="exceeds the 1000-byte download limit"):
        download_weights(f"{base}/yolo26n.pt", max_bytes=1000, progress=False)


def test_yolo_loads_a_url_safely(server):
    base, _ = server
    model = YOLO(f"{base}/yolo26n.pt")
    assert model.names == {0: "rectangle", 1: "ellipse", 2: "triangle"}
    assert model.ckpt_path.name == "yolo26n.pt"


def test_published_name_downloads_from_configured_base(server, monkeypatch, tmp_path):
    base, requests = server
    monkeypatch.setenv("YOLOKIT_WEIGHTS_URL", base)
    monkeypatch.chdir(tmp_path)  # no local yolo26n.pt
    assert YOLO("yolo26n.pt").names[2] == "triangle"
    assert requests == ["/yolo26n.pt"]


def test_published_name_without_network_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("YOLOKIT_WEIGHTS_URL", "http://127.0.0.1:9")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsError, match="'yolo11n.pt' is not a local file and downloading it failed: cannot fetch"):
        YOLO("yolo11n.pt")


def test_non_main_rank_waits_for_rank_zero(monkeypatch, server):
    base, requests = server
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(WeightsError, match="waited 0.2 s for rank 0 to download yolo26n.pt"):
        download_weights(f"{base}/yolo26n.pt", wait_seconds=0.2, progress=False)
    assert requests == []


def test_zoo_lists_every_family_and_scale_and_refuses_duplicates():
    names = list_entries()
    assert len(names) == 15 and "yolov8x.pt" in names and "yolo26n.pt" in names
    assert get_entry("yolo11s").spec == "yolo11s.yaml"
    with pytest.raises(ValueError, match="already registered"):
        register(WeightsEntry("yolo26n.pt", "yolo26n.yaml"))
