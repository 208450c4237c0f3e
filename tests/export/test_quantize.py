"""INT8 building blocks: static-dim folding, decode lookup, calibration set and hash, the budget logic."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def fixture(name: str):
    from yolokit.weights import load_weights

    return load_weights(FIXTURES / f"{name}-tiny-shapes.pt")


def run(data: bytes, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]


def write_images(folder: Path, count: int, blank: bool = False) -> list[Path]:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for k in range(count):
        image = np.full((64, 64, 3), 128, np.uint8) if blank else rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        paths.append(folder / f"{k:03d}.png")
        cv2.imwrite(str(paths[-1]), image)
    return paths


def test_fold_static_dims_keeps_outputs_and_removes_shape_reads():
    from yolokit.export.graph_tools import fold_static_dims
    from yolokit.export.onnx import export_onnx

    data = export_onnx(fixture("yolo26"), imgsz=128, dynamic=False)
    proto = onnx.shape_inference.infer_shapes(onnx.load_from_string(data))
    shapes_before = sum(n.op_type == "Shape" for n in proto.graph.node)
    assert fold_static_dims(proto) > 0
    shapes_after = [n for n in proto.graph.node if n.op_type == "Shape"]
    assert len(shapes_after) < shapes_before and any(n.input[0] == "images" for n in shapes_after)
    folded = proto.SerializeToString()
    for batch in (1, 3):  # the batch stays dynamic: it is read from the input
        x = torch.rand(batch, 3, 128, 128).numpy()
        np.testing.assert_allclose(run(folded, x), run(data, x), rtol=0, atol=1e-4)


def test_decode_nodes_are_the_head_arithmetic_only():
    from yolokit.export.graph_tools import decode_nodes, head_prefix
    from yolokit.export.onnx import export_onnx

    proto = onnx.load_from_string(export_onnx(fixture("yolov8"), imgsz=128))
    head = head_prefix(proto)
    assert head == "model.22"
    names = decode_nodes(proto)
    ops = {n.name: n.op_type for n in proto.graph.node}
    assert any("/dfl/" in n for n in names) and any(ops[n] == "Softmax" for n in names)  # DFL stays float
    assert ops[proto.graph.node[-1].name] == "Concat" and proto.graph.node[-1].name in names  # the final Concat
    assert all(n.startswith(f"/{head}/") for n in names)
    assert not any(("/cv2." in n or "/cv3." in n) and ops[n] == "Conv" for n in names)  # learned convs quantize


def test_calibration_set_hash_spacing_and_warning(tmp_path, caplog):
    from yolokit.export.calibration import CalibrationReader, calibration_hash, select_calibration_images

    paths = write_images(tmp_path / "images" / "train", 4)
    (tmp_path / "data.yaml").write_text(f"path: {tmp_path}\ntrain: images/train\nnames:\n  0: a\n")
    digests = sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in paths)
    assert calibration_hash(paths) == hashlib.sha256("\n".join(digests).encode()).hexdigest()
    assert calibration_hash(paths[::-1]) == calibration_hash(paths)
    with caplog.at_level(logging.WARNING, logger="yolokit.export.calibration"):
        chosen = select_calibration_images(tmp_path / "data.yaml", count=2)
    assert [p.name for p in chosen.paths] == ["000.png", "002.png"]  # evenly spaced
    assert "2 images" in chosen.warning and "fewer than the recommended 300" in caplog.text
    assert chosen.as_metadata()["sha256"] == calibration_hash(chosen.paths)
    reader = CalibrationReader(chosen.paths, (96, 128))
    first = reader.get_next()["images"]
    assert first.shape == (1, 3, 96, 128) and first.dtype == np.float32 and 0 <= first.min() <= first.max() <= 1
    assert reader.get_next() is not None and reader.get_next() is None


def float_convs(data: bytes) -> int:
    """Conv nodes whose weight is a float32 initializer (kept in float)."""
    proto = onnx.load_from_string(data)
    floats = {i.name for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    return sum(n.op_type == "Conv" and n.input[1] in floats for n in proto.graph.node)


@pytest.fixture(scope="module")
def int8_inputs(tmp_path_factory):
    from yolokit.export.calibration import CalibrationSet, calibration_hash
    from yolokit.export.onnx import export_onnx

    paths = write_images(tmp_path_factory.mktemp("calib"), 4)
    calibration = CalibrationSet(tuple(paths), calibration_hash(paths), "train", "test")
    return export_onnx(fixture("yolo11"), imgsz=64, dynamic=False), calibration


@pytest.mark.slow
def test_budget_failure_names_both_numbers(int8_inputs):
    from yolokit.errors import ExportError
    from yolokit.export.quantize import quantize_int8

    fp32, calibration = int8_inputs
    evaluate = lambda data: (0.5, 0.7) if data == fp32 else (0.3, 0.45)  # noqa: E731 - nothing recovers
    with pytest.raises(ExportError, match=r"INT8 mAP50-95 0\.3000 vs FP32 0\.5000: drop 20\.00 points exceeds "
                                          r"int8_budget=1 even with \d+ layer\(s\) kept in float"):
        quantize_int8(fp32, calibration, shape_hw=(64, 64), stride=32, evaluate=evaluate, sensitivity_rounds=1)
    data, report = quantize_int8(fp32, calibration, shape_hw=(64, 64), stride=32, evaluate=evaluate, force=True,
                                 sensitivity_rounds=2)
    assert report.forced and not report.within_budget and report.drop_points == pytest.approx(20.0)
    assert [r["kept_layers"] for r in report.sensitivity] == [1, 2]
    assert onnx.load_from_string(data).graph.node  # the best attempt is still a graph


@pytest.mark.slow
def test_sensitivity_pass_keeps_layers_in_float(int8_inputs):
    from yolokit.export.quantize import FORMS, quantize_int8

    fp32, calibration = int8_inputs
    # stand-in metric: only graphs with at least one convolution kept in float are accurate
    evaluate = lambda data: (0.5, 0.7) if data == fp32 else ((0.498, 0.69) if float_convs(data) else (0.3, 0.4))  # noqa: E731
    data, report = quantize_int8(fp32, calibration, shape_hw=(64, 64), stride=32, evaluate=evaluate)
    assert report.within_budget and report.kept_float and float_convs(data) > 0
    assert report.sensitivity[-1]["drop_points"] == pytest.approx(0.2)
    # the cost is the chosen file's against the fully quantized one of the same form (on a tiny model a layer kept in
    # float can even shrink the file: its Q/DQ nodes and scales weigh more than the int8 -> fp32 weights)
    assert report.float_cost["chosen_size_mb"] == pytest.approx(len(data) / 1e6, abs=1e-3)
    assert report.float_cost["all_int8_size_mb"] > 0 and report.float_cost["chosen_latency_ms"] > 0
    assert {c["form"] for c in report.candidates} == {f.name for f in FORMS}
    assert report.calibration["images"] == 4 and report.settings["weights"] == "int8 symmetric per-channel"
