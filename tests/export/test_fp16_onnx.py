"""FP16 ONNX: float16 weights inside, float32 input and output, close to the fp32 model in ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxconverter_common")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def initializer_types(data: bytes) -> dict[int, int]:
    proto = onnx.load_from_string(data)
    counts: dict[int, int] = {}
    for init in proto.graph.initializer:
        counts[init.data_type] = counts.get(init.data_type, 0) + int(np.prod(init.dims))
    return counts


@pytest.mark.parametrize("name", ["yolov8", "yolo11", "yolo26"])
@pytest.mark.parametrize("dynamic", [True, False])
def test_fp16_graph_matches_fp32(name, dynamic):
    from yolokit.export.fp16 import convert_fp16
    from yolokit.export.onnx import export_onnx
    from yolokit.weights import load_weights

    fp32 = export_onnx(load_weights(FIXTURES / f"{name}-tiny-shapes.pt"), imgsz=128, dynamic=dynamic)
    half = convert_fp16(fp32)
    types = initializer_types(half)
    assert types.get(onnx.TensorProto.FLOAT16, 0) > 0.95 * sum(types.values())  # the weights are float16
    proto = onnx.load_from_string(half)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {p.key for p in proto.metadata_props} >= {"names", "stride", "imgsz"}
    assert len(half) < 0.7 * len(fp32)  # metadata (spec) is a fixed share of these tiny files
    shape = (2, 3, 96, 160) if dynamic else (1, 3, 128, 128)
    x = torch.rand(*shape).numpy()
    ref = ort.InferenceSession(fp32, providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    got = ort.InferenceSession(half, providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert np.abs(got[:, :4] - ref[:, :4]).max() < 1.0  # pixels
    assert np.abs(got[:, 4:] - ref[:, 4:]).max() < 0.02


def test_facade_half_records_precision_and_parity(tmp_path):
    from yolokit import YOLO
    from yolokit.export.onnx import read_onnx_metadata

    path = YOLO(FIXTURES / "yolo26-tiny-shapes.pt").export(format="onnx", half=True, imgsz=128,
                                                          file=str(tmp_path / "half.onnx"))
    meta = read_onnx_metadata(path)
    assert meta["precision"] == "fp16" and meta["head"] == "nms"
    assert meta["parity"]["box_max_abs_px"] <= meta["parity"]["box_tolerance_px"] == pytest.approx(0.6)
    assert YOLO(path).predict(str(FIXTURES / "images" / "00000.jpg"), imgsz=128, verbose=False)[0].boxes is not None
