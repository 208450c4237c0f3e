"""Embedded NMS: the appended ONNX graph gives exactly yolokit's NMS (multi_label=False) as (B, max_det, 6) rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from yolokit.ops.nms import non_max_suppression

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def hand_preds() -> torch.Tensor:
    """(1, 4+2, 4) xywh + 2 class scores: boxes 0 and 1 overlap (IoU 0.68), box 2 is apart, box 3 is below conf."""
    boxes = [[50, 50, 40, 40], [54, 52, 40, 40], [200, 200, 30, 30], [120, 120, 20, 20]]
    scores = [[0.9, 0.1], [0.8, 0.3], [0.2, 0.7], [0.1, 0.05]]
    return torch.tensor([[*b, *s] for b, s in zip(boxes, scores, strict=True)], dtype=torch.float32).T[None]


def run_graph(proto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": x})[0]


def test_postprocess_module_hand_case():
    from yolokit.export.nms_graph import NMSPostprocess

    out = NMSPostprocess(conf=0.25, iou=0.5, max_det=5)(hand_preds())
    assert out.shape == (1, 5, 6)
    # box 1 (class 0, 0.8) is suppressed by box 0 (class 0, 0.9); box 2 is class 1 (0.7); box 3 is below conf
    expected = torch.tensor([[30, 30, 70, 70, 0.9, 0], [185, 185, 215, 215, 0.7, 1]], dtype=torch.float32)
    torch.testing.assert_close(out[0, :2], expected)
    assert torch.count_nonzero(out[0, 2:]) == 0  # padding rows
    kept_apart = NMSPostprocess(conf=0.25, iou=0.9, max_det=5)(hand_preds())  # IoU 0.68 < 0.9: both kept
    assert int((kept_apart[0, :, 4] > 0).sum()) == 3


def test_graph_equals_yolokit_nms_on_random_preds():
    from yolokit.export.nms_graph import nms_graph

    torch.manual_seed(0)
    preds = torch.rand(2, 4 + 3, 500) * torch.tensor([320, 320, 60, 60, 1, 1, 1]).view(1, -1, 1)
    for agnostic in (False, True):
        proto = nms_graph(3, conf=0.3, iou=0.5, max_det=20, agnostic=agnostic, opset=17)
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        got = session.run(None, {"preds": preds.numpy()})[0]
        ref = non_max_suppression(preds, 0.3, 0.5, agnostic=agnostic, max_det=20)
        assert got.shape == (2, 20, 6)
        for b in range(2):
            rows = got[b][got[b, :, 4] > 0]
            assert len(rows) == len(ref[b]) > 5
            np.testing.assert_allclose(rows, ref[b].numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["yolov8", "yolo11", "yolo26"])
def test_appended_to_fixture_models_matches_torch(name):
    from yolokit.export.nms_graph import append_nms
    from yolokit.export.onnx import export_onnx
    from yolokit.weights import load_weights

    model = load_weights(FIXTURES / f"{name}-tiny-shapes.pt")
    proto = append_nms(onnx.load_from_string(export_onnx(model, imgsz=320)), conf=0.05, iou=0.7, max_det=50,
                       agnostic=False)
    from yolokit.data.sources import read_image
    from yolokit.data.transforms import letterbox, to_input_tensor

    images = [letterbox(read_image(str(FIXTURES / "images" / f"0000{k}.jpg")), (320, 320))[0] for k in (0, 1)]
    x = to_input_tensor(images)
    got = run_graph(proto, x.numpy())
    import copy

    with torch.no_grad():
        raw = copy.deepcopy(model).fuse().eval()(x)
    ref = non_max_suppression(raw, 0.05, 0.7, max_det=50)
    assert got.shape == (2, 50, 6)
    for b in range(2):
        rows = got[b][got[b, :, 4] > 0]
        assert len(rows) == len(ref[b]) > 0
        np.testing.assert_allclose(rows[:, 4:], ref[b][:, 4:].numpy(), rtol=0, atol=1e-4)
        np.testing.assert_allclose(rows[:, :4], ref[b][:, :4].numpy(), rtol=0, atol=5e-3)


@pytest.mark.slow
def test_facade_export_and_predict(tmp_path):
    from yolokit import YOLO
    from yolokit.export.onnx import read_onnx_metadata

    source = FIXTURES / "yolo11-tiny-shapes.pt"
    path = YOLO(source).export(format="onnx", imgsz=320, embed_nms=True, conf=0.1, iou=0.6, max_det=40,
                               file=str(tmp_path / "nms.onnx"))
    meta = read_onnx_metadata(path)
    assert meta["embedded_nms"] == {"conf": 0.1, "iou": 0.6, "max_det": 40, "agnostic": False}
    assert meta["head"] == "embedded_nms" and meta["nms_free"] is True and meta["precision"] == "fp32"
    assert meta["parity"]["box_max_abs_px"] < 0.05 and len(meta["source_sha256"]) == 64
    image = str(FIXTURES / "images" / "00000.jpg")
    got = YOLO(path).predict(image, imgsz=320, conf=0.1, verbose=False)[0].boxes
    ref = YOLO(source).predict(image, imgsz=320, conf=0.1, iou=0.6, max_det=40, engine="eager", verbose=False)[0].boxes
    assert len(got) == len(ref) > 0
    torch.testing.assert_close(got.data, ref.data, rtol=0, atol=5e-3)


def test_embed_nms_refuses_nms_free_head():
    from yolokit.config import ExportConfig, make_config
    from yolokit.errors import ConfigError

    with pytest.raises(ConfigError, match="embed_nms=True appends NMS to the one-to-many head"):
        make_config(ExportConfig, embed_nms=True, nms=False)
