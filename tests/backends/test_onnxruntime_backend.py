"""OnnxRuntimeBackend: the TorchBackend surface on ONNX Runtime; predict and val through the facade match torch."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from yolokit.backends import OnnxRuntimeBackend, TorchBackend
from yolokit.errors import ConfigError, ExportError
from yolokit.export.onnx import export_onnx
from yolokit.model import YOLO
from yolokit.utils.threads import physical_cores, resolve_threads
from yolokit.weights import load_weights

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
IMAGES = sorted(str(p) for p in (FIXTURES / "images").glob("*.jpg"))


def weights(name: str) -> Path:
    return FIXTURES / f"{name}-tiny-shapes.pt"


@pytest.fixture(scope="module")
def yolo26_backend() -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend.from_model(load_weights(weights("yolo26")), num_threads=1, imgsz=320)


def test_from_model_surface_and_lazy_nms_free_head(yolo26_backend):
    backend = yolo26_backend
    torch_backend = TorchBackend(load_weights(weights("yolo26")), engine="eager")
    assert (backend.stride, backend.names, backend.end2end, backend.dynamic) == (32, torch_backend.names, True, True)
    assert backend.device == torch.device("cpu") and backend.dtype == torch.float32 and backend.engine == "onnxruntime"
    assert list(backend._sessions) == [False]  # the NMS-free head is not exported until asked for
    x = torch.rand(2, 3, 192, 256)
    got = backend(x)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32 and got.shape == (2, 7, 1008)
    assert torch.allclose(got, torch_backend(x), rtol=0, atol=5e-4)
    backend.set_nms_free(True)
    torch_backend.set_nms_free(True)
    assert sorted(backend._sessions) == [False, True]
    rows, expected = backend(x), torch_backend(x)
    assert rows.shape == expected.shape == (2, 300, 6)
    assert torch.allclose(rows[..., 4], expected[..., 4], atol=1e-5)
    small = torch.rand(1, 3, 96, 128)  # 252 anchors, fewer than max_det: K follows the input, as in torch
    rows, expected = backend(small), torch_backend(small)
    assert rows.shape == expected.shape == (1, 252, 6)
    assert torch.allclose(rows[..., 4], expected[..., 4], atol=1e-5)
    backend.set_nms_free(False)
    assert backend(x).shape == (2, 7, 1008)
    with pytest.raises(ValueError, match="multiples of 32"):
        backend(torch.zeros(1, 3, 50, 64))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        backend(torch.zeros(3, 64, 64))
    backend.warmup(64)


def test_file_backend_reads_metadata_and_holds_one_head(tmp_path):
    path = export_onnx(load_weights(weights("yolo26")), tmp_path / "m.onnx", imgsz=256, nms_free=True,
                       dynamic=False)
    backend = OnnxRuntimeBackend(path, num_threads=1)
    assert backend.names == {0: "rectangle", 1: "ellipse", 2: "triangle"}
    assert (backend.stride, backend.end2end, backend.nms_free, backend.dynamic) == (32, True, True, False)
    assert backend(torch.rand(3, 3, 256, 256)).shape == (3, 300, 6)  # batch stays dynamic
    with pytest.raises(ValueError, match="fixed \\(256, 256\\) input"):
        backend(torch.rand(1, 3, 320, 320))
    with pytest.raises(ConfigError, match="only the NMS-free end-to-end head, got nms=True: pass nms=False"):
        backend.set_nms_free(False)
    backend.set_nms_free(True)  # the head it has
    v8 = OnnxRuntimeBackend(export_onnx(load_weights(weights("yolov8")), imgsz=64), num_threads=1)
    with pytest.raises(ConfigError, match="one-to-one head"):
        v8.set_nms_free(True)


def test_foreign_or_missing_files_raise_export_errors(tmp_path):
    import onnx

    proto = onnx.load_from_string(export_onnx(load_weights(weights("yolov8")), imgsz=64))
    del proto.metadata_props[:]
    with pytest.raises(ExportError, match="no yolokit metadata 'names'"):
        OnnxRuntimeBackend(proto.SerializeToString())
    with pytest.raises(ExportError, match="cannot read ONNX model"):
        OnnxRuntimeBackend(tmp_path / "absent.onnx")
    with pytest.raises(ExportError, match="ONNX Runtime cannot load"):
        OnnxRuntimeBackend(b"not an onnx graph")


def test_thread_count_rules(monkeypatch, yolo26_backend):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert resolve_threads() == 3 and resolve_threads(2) == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert resolve_threads() == physical_cores()
    with pytest.raises(ConfigError, match="num_threads must be >= 1"):
        resolve_threads(0)
    assert yolo26_backend.session.get_session_options().intra_op_num_threads == 1


def test_missing_onnxruntime_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    with pytest.raises(ExportError, match="'onnxruntime' package.*pip install onnx onnxruntime") as info:
        YOLO(weights("yolov8")).predict(IMAGES[0], imgsz=64, engine="onnxruntime", verbose=False)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name, nms", [("yolov8", True), ("yolo11", True), ("yolo26", True), ("yolo26", False)])
def test_predict_through_the_facade_matches_torch(name, nms):
    model = YOLO(weights(name))
    args = {"imgsz": 320, "conf": 0.05, "nms": nms, "verbose": False}
    expected = model.predict(IMAGES, engine="channels_last", **args)
    got = model.predict(IMAGES, engine="onnxruntime", **args)
    assert sum(len(r) for r in expected) > 4  # the fixture finds shapes in these images
    for e, g in zip(expected, got, strict=True):
        e_rows, g_rows = np.asarray(e.boxes.data), np.asarray(g.boxes.data)
        assert e_rows.shape == g_rows.shape
        np.testing.assert_array_equal(g_rows[:, 5], e_rows[:, 5])  # classes, in score order
        np.testing.assert_allclose(g_rows[:, :4], e_rows[:, :4], rtol=0, atol=1e-3)  # original-image pixels
        np.testing.assert_allclose(g_rows[:, 4], e_rows[:, 4], rtol=0, atol=1e-5)


def test_facade_engine_checks():
    model = YOLO(weights("yolov8"))
    with pytest.raises(ConfigError, match="onnxruntime, got 'onnx'"):
        model.predict(IMAGES[0], engine="onnx", verbose=False)
    with pytest.raises(ConfigError, match="runs on the CPU"):
        model.predict(IMAGES[0], engine="onnxruntime", device="cuda", verbose=False)


def test_val_through_the_facade_matches_torch(tmp_path):
    from yolokit.data.synth import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "synth", n_train=1, n_val=4, imgsz=320)
    model = YOLO(weights("yolo26"))
    args = {"imgsz": 320, "batch": 2, "plots": False, "save_json": False, "verbose": False,
            "project": str(tmp_path / "runs")}
    for nms in (True, False):  # NMS on the one-to-many head, then the NMS-free one-to-one head
        expected = model.val(data, engine="channels_last", nms=nms, **args)
        got = model.val(data, engine="onnxruntime", nms=nms, **args)
        assert expected.num_images == got.num_images == 4
        assert expected.map50 > 0.05  # a real score to compare, not zero against zero
        for key in ("map", "map50", "map75", "precision", "recall"):
            assert abs(getattr(got, key) - getattr(expected, key)) <= 1e-6, (nms, key)
