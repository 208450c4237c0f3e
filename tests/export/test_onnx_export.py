"""export_onnx: ONNX Runtime runs the exported graph to the fused torch model's numbers; metadata round trip."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from yolokit.errors import ConfigError, ExportError
from yolokit.export.onnx import export_onnx, read_onnx_metadata
from yolokit.weights import detect_format, load_weights

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# Box tolerance in input pixels. fp32 noise is larger than 1e-4 px on stride-32 DFL boxes: on these inputs torch
# fp32 itself is 1.6e-4 px from float64 and channels_last is 1.5e-4 px from eager; ONNX Runtime measured <= 1.9e-4.
BOX_ATOL = 5e-4


def fixture_model(name: str):
    return load_weights(FIXTURES / f"{name}-tiny-shapes.pt")


def run(data: bytes, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {"images": x.numpy()})[0]


def torch_fused(model, x: torch.Tensor, nms_free: bool = False) -> np.ndarray:
    import copy

    fused = copy.deepcopy(model).fuse().eval()
    if nms_free:
        fused.set_nms_free(True)
    with torch.no_grad():
        return fused(x).numpy()


@pytest.mark.parametrize("name", ["yolov8", "yolo11", "yolo26"])
def test_default_head_matches_torch_at_several_shapes(name):
    model = fixture_model(name)
    data = export_onnx(model, imgsz=320)
    assert isinstance(data, bytes)
    torch.manual_seed(0)
    for shape in [(1, 3, 320, 320), (2, 3, 256, 352)]:  # dynamic batch, height and width
        x = torch.rand(*shape)
        expected, got = torch_fused(model, x), run(data, x)
        anchors = sum((shape[2] // s) * (shape[3] // s) for s in (8, 16, 32))
        assert got.shape == expected.shape == (shape[0], 4 + 3, anchors)
        np.testing.assert_allclose(got[:, :4], expected[:, :4], rtol=0, atol=BOX_ATOL)
        np.testing.assert_allclose(got[:, 4:], expected[:, 4:], rtol=0, atol=1e-5)  # class probabilities


def test_nms_free_head_matches_torch_on_distinct_scores():
    model = fixture_model("yolo26")
    data = export_onnx(model, imgsz=320, nms_free=True)
    torch.manual_seed(1)
    x = torch.rand(2, 3, 288, 320)
    expected, got = torch_fused(model, x, nms_free=True), run(data, x)
    assert got.shape == expected.shape == (2, 300, 6)
    np.testing.assert_allclose(got[..., 4], expected[..., 4], rtol=0, atol=1e-5)  # sorted scores agree
    for b in range(2):
        scores = expected[b, :, 4]
        gaps = np.abs(np.diff(scores))
        distinct = np.ones_like(scores, dtype=bool)  # rows whose score is not within 1e-5 of a neighbour's
        distinct[:-1] &= gaps > 1e-5
        distinct[1:] &= gaps > 1e-5
        assert distinct.sum() > 50
        np.testing.assert_allclose(got[b, distinct, :4], expected[b, distinct, :4], rtol=0, atol=BOX_ATOL)
        np.testing.assert_array_equal(got[b, distinct, 5], expected[b, distinct, 5])


def test_metadata_round_trip_through_a_file(tmp_path):
    model = fixture_model("yolo26")
    path = export_onnx(model, tmp_path / "sub" / "model.onnx", imgsz=(256, 320), nms_free=True)
    assert path == tmp_path / "sub" / "model.onnx" and path.is_file()
    assert detect_format(path) == "onnx"
    assert not list(path.parent.glob(".*.tmp"))  # atomic write left no temporary file
    meta = read_onnx_metadata(path)
    assert meta["names"] == {0: "rectangle", 1: "ellipse", 2: "triangle"} == model.names
    assert meta["stride"] == [8, 16, 32]
    assert meta["imgsz"] == [256, 320]
    assert meta["nms_free"] is True and meta["end2end"] is True and meta["dynamic"] is True
    assert meta["max_det"] == 300 and meta["task"] == "detect"
    assert meta["spec"] == model.spec
    import yolokit

    assert meta["yolokit_version"] == yolokit.__version__
    assert read_onnx_metadata(path.read_bytes()) == meta


def test_bytesio_target_static_shape_and_caller_model_untouched():
    model = fixture_model("yolov8")
    model.train()
    buffer = io.BytesIO()
    data = export_onnx(model, buffer, imgsz=256, dynamic=False)
    assert buffer.getvalue() == data
    assert model.training and not model.is_fused()  # export works on a copy
    meta = read_onnx_metadata(data)
    assert meta["dynamic"] is False and meta["nms_free"] is False and meta["end2end"] is False
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    dims = session.get_inputs()[0].shape
    assert dims[1:] == [3, 256, 256] and isinstance(dims[0], str)  # batch stays dynamic
    assert session.get_outputs()[0].shape[1:] == [7, 1344]


def test_bad_arguments_raise_one_line_errors():
    v8 = fixture_model("yolov8")
    with pytest.raises(ConfigError, match="one-to-one head"):
        export_onnx(v8, nms_free=True)
    with pytest.raises(ConfigError, match="multiples of the model stride 32"):
        export_onnx(v8, imgsz=100)
    with pytest.raises(ConfigError, match="DetectionModel"):
        export_onnx(torch.nn.Conv2d(3, 3, 1))


def test_missing_onnx_package_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    with pytest.raises(ExportError, match="pip install onnx onnxruntime") as info:
        export_onnx(fixture_model("yolov8"))
    assert "\n" not in str(info.value)
