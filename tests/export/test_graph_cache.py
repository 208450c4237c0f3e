"""The default CPU engine: engine='auto' resolves to ONNX Runtime, and exported graphs are cached on disk."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import yolokit.export.graph_cache as graph_cache
from yolokit.backends import OnnxRuntimeBackend, TorchBackend, create_backend
from yolokit.export.onnx import prepare_for_export
from yolokit.model import YOLO
from yolokit.weights import load_weights

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WEIGHTS = FIXTURES / "yolo11-tiny-shapes.pt"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache folder for one test, and a counter of real exports."""
    monkeypatch.setenv("YOLOKIT_CACHE_DIR", str(tmp_path / "cache"))
    exports = []
    real = graph_cache.export_onnx

    def counting(*args, **kwargs):
        exports.append(kwargs.get("nms_free"))
        return real(*args, **kwargs)

    monkeypatch.setattr(graph_cache, "export_onnx", counting)
    return tmp_path / "cache" / "onnx", exports


def test_auto_is_onnxruntime_on_cpu_fp32_and_torch_otherwise(cache, monkeypatch):
    model = load_weights(WEIGHTS)
    assert isinstance(create_backend(model), OnnxRuntimeBackend)
    assert isinstance(create_backend(model, engine="channels_last"), TorchBackend)
    assert isinstance(create_backend(model, half=True), TorchBackend)  # ONNX Runtime runs fp32 only
    monkeypatch.setattr("yolokit.backends.factory.AUTO_ONNXRUNTIME_MAX_PARAMS", 10_000)  # m/l/x-sized for the test
    assert isinstance(create_backend(model), TorchBackend)
    assert isinstance(create_backend(model, engine="onnxruntime"), OnnxRuntimeBackend)  # asked for: always
    monkeypatch.undo()
    monkeypatch.setattr("yolokit.backends.factory._onnxruntime_installed", lambda: False)
    backend = create_backend(model)
    assert isinstance(backend, TorchBackend) and backend.engine == "channels_last"


def test_auto_falls_back_to_torch_with_a_warning_when_the_export_fails(cache, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator for this test\nsecond line")

    monkeypatch.setattr(graph_cache, "export_onnx", broken)
    with caplog.at_level(logging.WARNING):
        backend = create_backend(load_weights(WEIGHTS))
    assert isinstance(backend, TorchBackend)
    assert "ONNX Runtime cannot run this model (unsupported operator for this test); using PyTorch" in caplog.text
    with pytest.raises(RuntimeError, match="unsupported operator"):  # asked for explicitly: no silent fallback
        create_backend(load_weights(WEIGHTS), engine="onnxruntime")


def test_second_backend_reuses_the_cached_graph(cache):
    folder, exports = cache
    model = load_weights(WEIGHTS)
    first = OnnxRuntimeBackend.from_model(model, num_threads=1)
    files = list(folder.glob("*.onnx"))
    assert exports == [False] and len(files) == 1
    second = OnnxRuntimeBackend.from_model(model, num_threads=1)
    assert exports == [False]  # loaded from the file, not exported again
    x = torch.rand(1, 3, 128, 160)
    assert torch.equal(first(x), second(x))
    assert torch.allclose(second(x), TorchBackend(model, engine="eager")(x), rtol=0, atol=5e-4)
    OnnxRuntimeBackend.from_model(model, num_threads=1, cache=False)
    assert exports == [False] and len(list(folder.glob("*.onnx"))) == 1  # cache=False: in memory only


def test_new_weights_and_other_heads_get_their_own_graphs(cache):
    folder, exports = cache
    model = load_weights(FIXTURES / "yolo26-tiny-shapes.pt")
    backend = OnnxRuntimeBackend.from_model(model, num_threads=1)
    backend.set_nms_free(True)  # the one-to-one head is a second graph
    assert exports == [False, True] and len(list(folder.glob("*.onnx"))) == 2
    with torch.no_grad():
        model.model[0].conv.weight.mul_(0.5)
    changed = OnnxRuntimeBackend.from_model(model, num_threads=1)
    assert exports == [False, True, False] and len(list(folder.glob("*.onnx"))) == 3
    x = torch.rand(1, 3, 160, 160)
    backend.set_nms_free(False)
    assert not torch.allclose(changed(x), backend(x))  # not a stale graph of the old weights
    key = graph_cache.graph_key
    private = prepare_for_export(model, nms_free=False)
    assert key(private, 640, True, False) != key(private, 640, False, False) != key(private, 640, True, True)


def test_a_corrupt_cached_graph_is_replaced(cache, caplog):
    folder, exports = cache
    model = load_weights(WEIGHTS)
    OnnxRuntimeBackend.from_model(model, num_threads=1)
    (path,) = folder.glob("*.onnx")
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 3])  # truncated, as after a crash of a writer that was not atomic
    with caplog.at_level(logging.WARNING):
        backend = OnnxRuntimeBackend.from_model(model, num_threads=1)
    assert f"the cached ONNX graph {path} does not load" in caplog.text
    assert exports == [False, False] and path.read_bytes() == good
    assert backend(torch.rand(1, 3, 64, 64)).shape[1] == 4 + len(backend.names)


def test_unwritable_cache_costs_a_warning_not_the_prediction(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("YOLOKIT_CACHE_DIR", str(blocker))  # cache root is a file: nothing can be created inside
    with caplog.at_level(logging.WARNING):
        results = YOLO(WEIGHTS).predict(np.zeros((64, 64, 3), np.uint8), imgsz=64, verbose=False)
    assert len(results) == 1
    assert "cannot cache the exported ONNX graph" in caplog.text and "YOLOKIT_CACHE_DIR" in caplog.text


def test_only_the_main_rank_writes_and_old_graphs_are_evicted(cache, monkeypatch):
    folder, exports = cache
    model = load_weights(WEIGHTS)
    monkeypatch.setenv("RANK", "1")
    OnnxRuntimeBackend.from_model(model, num_threads=1)
    assert exports == [False] and not folder.exists()
    monkeypatch.delenv("RANK")
    folder.mkdir(parents=True)
    for index in range(graph_cache.MAX_FILES + 3):
        old = folder / f"old{index:02d}.onnx"
        old.write_bytes(b"x")
        os.utime(old, (1000 + index, 1000 + index))
    OnnxRuntimeBackend.from_model(model, num_threads=1)
    kept = sorted(p.name for p in folder.glob("*.onnx"))
    assert len(kept) == graph_cache.MAX_FILES
    assert "old00.onnx" not in kept and "old03.onnx" not in kept and f"old{graph_cache.MAX_FILES + 2:02d}.onnx" in kept


def test_default_engine_nms_free_below_max_det_anchors_matches_torch(cache):
    model = YOLO(FIXTURES / "yolo26-tiny-shapes.pt")
    image = np.full((64, 64, 3), 114, np.uint8)
    image[16:48, 8:40] = (20, 200, 20)
    args = {"imgsz": 64, "nms": False, "conf": 0.0, "verbose": False}  # 84 anchors < max_det 300
    got = model.predict(image, **args)[0]
    expected = model.predict(image, engine="channels_last", **args)[0]
    assert isinstance(model._backend("cpu", False, "auto"), OnnxRuntimeBackend)
    assert len(got) == len(expected) == 84
    np.testing.assert_allclose(np.asarray(got.boxes.conf), np.asarray(expected.boxes.conf), rtol=0, atol=1e-5)


def test_the_key_covers_yolokit_code(monkeypatch):
    private = prepare_for_export(load_weights(WEIGHTS), nms_free=False)
    before = graph_cache.graph_key(private, 640, True, False)
    assert graph_cache.graph_key(private, 640, True, False) == before  # deterministic
    monkeypatch.setattr(graph_cache, "code_digest", lambda: "other yolokit code")
    assert graph_cache.graph_key(private, 640, True, False) != before  # an upgrade never reuses old graphs


def test_a_read_only_cache_still_serves_its_graphs(cache, monkeypatch):
    folder, exports = cache
    model = load_weights(WEIGHTS)
    OnnxRuntimeBackend.from_model(model, num_threads=1)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(graph_cache.os, "utime", refuse)
    OnnxRuntimeBackend.from_model(model, num_threads=1)
    assert exports == [False]  # read from the cache although its time stamp cannot be refreshed
