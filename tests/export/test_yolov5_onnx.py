"""ONNX export of a YOLOv5 model: ONNX Runtime output equal to PyTorch's, metadata that keeps the YOLOv5 spec (and so
the original's NMS defaults) for ``YOLO("x.onnx")``."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("onnxruntime")

from yolokit import YOLO  # noqa: E402
from yolokit.export.onnx import export_onnx, read_onnx_metadata  # noqa: E402
from yolokit.models.builder import build_model  # noqa: E402

TINY_V5 = {"nc": 3, "depth_multiple": 0.33, "width_multiple": 0.125,
           "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119]],
           "backbone": [[-1, 1, "Focus", [64, 3]], [-1, 1, "Conv", [128, 3, 2]], [-1, 3, "C3", [128]],
                        [-1, 1, "Conv", [128, 3, 2]], [-1, 1, "C3", [128]], [-1, 1, "Conv", [256, 3, 2]],
                        [-1, 1, "SPP", [256, [5, 9, 13]]]],
           "head": [[-1, 1, "Conv", [128, 1, 1]], [-1, 1, "nn.Upsample", ["None", 2, "nearest"]],
                    [[-1, 4], 1, "Concat", [1]], [-1, 1, "C3", [128, False]],
                    [[10, 6], 1, "Detect", ["nc", "anchors"]]]}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_onnx_runtime_equals_pytorch_and_keeps_the_spec(tmp_path) -> None:
    import onnxruntime as ort

    from conftest import randomise_batchnorm

    torch.manual_seed(0)
    model = build_model(TINY_V5)
    randomise_batchnorm(model)
    model.names = {0: "a", 1: "b", 2: "c"}
    path = export_onnx(model, tmp_path / "v5.onnx", imgsz=64, dynamic=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in ((64, 64), (96, 64)):  # dynamic height / width: the grids are built in the graph
        x = torch.rand(2, 3, *shape, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            expected = model.eval().fuse()(x)
        found = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
        assert found.shape == expected.shape == (2, 4 + 3, 3 * sum((shape[0] // s) * (shape[1] // s) for s in (8, 16)))
        torch.testing.assert_close(found, expected, rtol=1e-4, atol=1e-3)
    meta = read_onnx_metadata(path)
    assert meta["spec"]["anchors"] == TINY_V5["anchors"] and meta["stride"] == [8, 16]
    loaded = YOLO(path)
    assert loaded._family_defaults("predict") == {"iou": 0.45, "max_det": 1000}  # from the spec in the file


@pytest.mark.slow
def test_int8_export_of_a_yolov5_model_through_the_export_path(tmp_path, monkeypatch) -> None:
    """``export(format="onnx", int8=True, data=)`` on a YOLOv5 model: a real INT8 graph whose budget mAP is measured
    with the original's val iou 0.6, as ``YOLO(int8).val()`` measures it."""
    import onnx

    from conftest import randomise_batchnorm
    from yolokit.data.synth import make_synthetic_dataset
    from yolokit.eval import validator
    from yolokit.weights import save_weights

    torch.manual_seed(0)
    model = build_model(TINY_V5)
    randomise_batchnorm(model)
    model.names = {0: "rectangle", 1: "ellipse", 2: "triangle"}
    weights = save_weights(model, tmp_path / "v5.safetensors")
    data = make_synthetic_dataset(tmp_path / "shapes", n_train=6, n_val=4, imgsz=64, seed=0)
    seen = []
    original = validator.validate
    monkeypatch.setattr(validator, "validate", lambda backend, config, **kw: seen.append(config.iou) or original(
        backend, config, **kw))
    path = YOLO(weights).export(format="onnx", int8=True, data=str(data), imgsz=64, calib_images=6, int8_budget=100)
    assert path == tmp_path / "v5_int8.onnx"
    proto = onnx.load(str(path))
    assert any(i.data_type == onnx.TensorProto.INT8 for i in proto.graph.initializer)
    meta = read_onnx_metadata(path)
    assert meta["precision"] == "int8" and meta["quantization"]["metric"] == "mAP50-95"
    assert meta["spec"]["anchors"] == TINY_V5["anchors"]
    assert meta["map50_95"] == meta["quantization"]["int8"]["map50_95"]
    assert seen and set(seen) == {0.6}  # FP32 and every INT8 candidate judged at val.py's iou
    exported = YOLO(path)
    metrics = exported.val(data=str(data), imgsz=64, plots=False, project=str(tmp_path / "v"), verbose=False)
    assert seen[-1] == 0.6 and metrics.map == pytest.approx(meta["map50_95"], abs=1e-4)
