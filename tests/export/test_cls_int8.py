"""INT8 export of a classifier through the checked export path: calibration on the class folders with the
classifier's eval crop, the budget judged on top-1 (points), the figures in the file's metadata, and the budget
refusing a graph whose top-1 falls."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CHECKPOINT = FIXTURES / "cls" / "yolo11-cls-tiny-random.pt"  # 3 classes: ellipse, rectangle, triangle
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    from yolokit.data.classify_synth import make_synthetic_classification

    return make_synthetic_classification(tmp_path_factory.mktemp("cls"), n_train=12, n_val=9, imgsz=64,
                                         classes=("ellipse", "rectangle", "triangle"))


def test_classifier_int8_export_records_the_top1_drop(shapes, tmp_path):
    from yolokit import YOLO
    from yolokit.export.onnx import read_onnx_metadata

    weights = tmp_path / "cls.pt"
    shutil.copy(CHECKPOINT, weights)
    source = YOLO(weights)
    path = source.export(format="onnx", int8=True, data=str(shapes), imgsz=64, calib_images=12, int8_budget=100)
    assert path == tmp_path / "cls_int8.onnx"
    proto = onnx.load(str(path))
    quantized = {i.name for i in proto.graph.initializer if i.data_type == onnx.TensorProto.INT8}
    assert any("linear" in name for name in quantized)  # the head's linear layer is quantized too
    assert any(n.op_type == "Softmax" for n in proto.graph.node)  # the softmax stays float
    meta = read_onnx_metadata(path)
    quant = meta["quantization"]
    assert meta["task"] == "classify" and meta["precision"] == "int8" and quant["metric"] == "top-1"
    assert meta["head"] == "classify"  # no NMS
    assert quant["calibration"]["images"] == 12 and meta["parity"]["judged_by"] == "top-1 (INT8)"
    fp32_top1 = source.val(data=str(shapes), imgsz=64, plots=False, project=str(tmp_path / "v"), verbose=False).top1
    assert quant["fp32"]["map50_95"] == pytest.approx(fp32_top1, abs=1e-5)  # the budget's FP32 side: top-1
    assert quant["drop_points"] == pytest.approx(100 * (quant["fp32"]["map50_95"] - quant["int8"]["map50_95"]),
                                                 abs=1e-3)
    exported = YOLO(path)
    metrics = exported.val(data=str(shapes), imgsz=64, plots=False, project=str(tmp_path / "v"), verbose=False)
    assert meta["top1"] == pytest.approx(metrics.top1, abs=1e-5)
    assert meta["top1"] == pytest.approx(quant["int8"]["map50_95"], abs=1e-5)
    assert meta["top5"] == pytest.approx(metrics.top5, abs=1e-5) and meta["map50_95"] is None
    images = sorted(str(p) for p in (shapes / "val").rglob("*.jpg"))
    int8 = np.stack([r.probs.data.numpy() for r in exported.predict(images, verbose=False)])
    fp32 = np.stack([r.probs.data.numpy() for r in source.predict(images, imgsz=64, verbose=False)])
    assert int8.shape == fp32.shape == (9, 3) and np.allclose(int8.sum(1), 1.0, atol=1e-5)


def test_the_budget_is_judged_on_top1(shapes):
    from yolokit.errors import ExportError
    from yolokit.export.calibration import select_calibration_images
    from yolokit.export.onnx import export_onnx
    from yolokit.predict.classify import classify_preprocess
    from yolokit.weights import load_model

    model = load_model(CHECKPOINT)
    fp32 = export_onnx(model, imgsz=64, dynamic=False)
    calibration = select_calibration_images(shapes, 4, task="classify")
    assert calibration.count == 4 and all("/train/" in str(p) for p in calibration.paths)
    evaluate = lambda data: (0.9, 1.0) if data == fp32 else (0.6, 1.0)  # noqa: E731 - INT8 loses 30 points of top-1
    preprocess = lambda image: classify_preprocess([image], 64, model.metadata).numpy()  # noqa: E731
    from yolokit.export.quantize import quantize_int8

    with pytest.raises(ExportError, match=r"INT8 top-1 0\.6000 vs FP32 0\.9000: drop 30\.00 points exceeds "
                                          r"int8_budget=1 even with"):
        quantize_int8(fp32, calibration, shape_hw=(64, 64), stride=1, evaluate=evaluate, sensitivity_rounds=1,
                      preprocess=preprocess, metric="top-1")


def test_the_benchmark_table_of_a_classifier_reports_top1(shapes, tmp_path):
    from yolokit.deploy.benchmark import benchmark, format_table
    from yolokit.weights import load_model

    rows = benchmark(load_model(CHECKPOINT), data=str(shapes), imgsz=64, rows=("pytorch-fp32", "onnx-fp32"),
                     rounds=3, out=tmp_path, threads=1)
    torch_row, onnx_row = rows
    assert {"top1", "top5"} <= set(torch_row) and "map50_95" not in torch_row
    assert onnx_row["top1"] == torch_row["top1"] and onnx_row["drop_points"] == 0.0  # FP32: the same top-1
    assert 0.0 <= torch_row["top1"] <= torch_row["top5"] <= 1.0
    header = format_table(rows).splitlines()[0]
    assert "top-1" in header and "mAP" not in header and (tmp_path / "benchmark.json").is_file()
