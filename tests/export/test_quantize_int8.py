"""INT8 export end to end on a tiny trained model: real int8 weights and quantized ops, metadata, predict and val,
and a bad calibration (blank images, minmax) that the budget catches."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("pycocotools")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from yolokit.data.synth import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("shapes"), n_train=8, n_val=8, imgsz=128, seed=0)


def test_int8_file_is_real_and_usable(shapes, tmp_path):
    from yolokit import YOLO
    from yolokit.export.onnx import read_onnx_metadata

    weights = tmp_path / "best.pt"
    shutil.copy(FIXTURES / "yolo11-tiny-shapes.pt", weights)
    path = YOLO(weights).export(format="onnx", int8=True, data=str(shapes), imgsz=128, dynamic=False,
                                calib_images=8, int8_budget=100)
    assert path == tmp_path / "best_int8.onnx"
    proto = onnx.load(str(path))
    int8 = [i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert sum(int(np.prod(i.dims)) for i in int8) > 0.9 * sum(
        int(np.prod(i.dims)) for i in proto.graph.initializer if i.data_type in (onnx.TensorProto.INT8,
                                                                                 onnx.TensorProto.FLOAT) and i.dims)
    ops = {n.op_type for n in proto.graph.node}
    assert ops & {"QuantizeLinear", "QLinearConv"} and ops & {"DequantizeLinear", "QLinearConv"}
    meta = read_onnx_metadata(path)
    quant = meta["quantization"]
    assert meta["precision"] == "int8" and meta["calibration_sha256"] == quant["calibration"]["sha256"]
    assert quant["calibration"]["images"] == 8 and "fewer than the recommended 300" in quant["calibration"]["warning"]
    assert quant["chosen"] in {c["form"] for c in quant["candidates"]} and quant["settings"]["method"] == "minmax"
    assert quant["fp32"]["size_mb"] > 1.5 * quant["int8"]["size_mb"] and meta["latency_ms"] > 0
    assert isinstance(quant["faster"], bool) and meta["map50_95"] == quant["int8"]["map50_95"]
    assert len(meta["source_sha256"]) == 64 and meta["parity"]["judged_by"] == "mAP (INT8)"
    model = YOLO(path)
    results = model.predict(str(FIXTURES / "images" / "00000.jpg"), imgsz=128, conf=0.05, verbose=False)
    assert results[0].boxes.data.shape[1] == 6
    metrics = model.val(data=str(shapes), imgsz=128, plots=False, project=str(tmp_path / "runs"), verbose=False)
    assert metrics.map == pytest.approx(meta["map50_95"], abs=1e-4)  # the file records 5 digits


def test_blank_calibration_trips_the_budget(shapes, tmp_path):
    import cv2

    from yolokit import YOLO
    from yolokit.errors import ExportError
    from yolokit.export.onnx import read_onnx_metadata

    blank = tmp_path / "blank" / "images" / "train"
    blank.mkdir(parents=True)
    for k in range(2):
        cv2.imwrite(str(blank / f"{k}.png"), np.full((128, 128, 3), 128, np.uint8))
    root = Path(shapes).parent
    data = tmp_path / "bad.yaml"
    data.write_text(f"path: {tmp_path / 'blank'}\ntrain: images/train\nval: {root / 'images' / 'val'}\n"
                    "names:\n  0: rectangle\n  1: ellipse\n  2: triangle\n")
    model = YOLO(FIXTURES / "yolo11-tiny-shapes.pt")
    try:
        path = model.export(format="onnx", int8=True, data=str(data), imgsz=128, dynamic=False, calib_images=2,
                            calib_method="minmax", int8_budget=1.0, file=str(tmp_path / "bad_int8.onnx"))
    except ExportError as error:  # the budget holds the line: both numbers and what to try
        message = str(error)
        assert "exceeds int8_budget=1" in message and "vs FP32" in message and "calib_method=percentile" in message
        assert "force=True" in message and not (tmp_path / "bad_int8.onnx").exists()
    else:  # or the sensitivity pass recovered: it names the layers it kept in float
        quant = read_onnx_metadata(path)["quantization"]
        assert quant["within_budget"] and quant["kept_float"] and quant["sensitivity"]
