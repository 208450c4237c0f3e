"""TorchScript export: traced file equals the fused PyTorch model, carries metadata, loads in YOLO() by content."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import torch

from yolokit.export.torchscript import export_torchscript, is_torchscript, load_torchscript, read_torchscript_metadata
from yolokit.weights import load_weights

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def fused(model, nms_free: bool = False):
    reference = copy.deepcopy(model).fuse().eval()
    if nms_free:
        reference.set_nms_free(True)
    return reference


@pytest.mark.parametrize("name", ["yolov8", "yolo11", "yolo26"])
def test_traced_file_matches_torch_at_two_shapes(name, tmp_path):
    model = load_weights(FIXTURES / f"{name}-tiny-shapes.pt")
    path = export_torchscript(model, tmp_path / "m.torchscript", imgsz=128)
    module, meta = load_torchscript(path)
    assert meta["names"] == {0: "rectangle", 1: "ellipse", 2: "triangle"} and meta["imgsz"] == [128, 128]
    assert meta["dynamic"] is True and meta["nms_free"] is False and meta["task"] == "detect"
    torch.manual_seed(0)
    for shape in [(1, 3, 128, 128), (2, 3, 96, 160)]:  # another batch and size than traced
        x = torch.rand(*shape)
        with torch.no_grad():
            torch.testing.assert_close(module(x), fused(model)(x), rtol=0, atol=1e-4)


def test_nms_free_head_and_metadata_without_loading(tmp_path):
    model = load_weights(FIXTURES / "yolo26-tiny-shapes.pt")
    data = export_torchscript(model, imgsz=128, nms_free=True, metadata={"precision": "fp32"})
    meta = read_torchscript_metadata(data)
    assert meta["nms_free"] is True and meta["dynamic"] is False and meta["precision"] == "fp32"
    module, _ = load_torchscript(data)
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(module(x), fused(model, nms_free=True)(x), rtol=0, atol=1e-4)


def test_format_detected_by_content(tmp_path):
    path = export_torchscript(load_weights(FIXTURES / "yolov8-tiny-shapes.pt"), tmp_path / "m.torchscript", imgsz=64)
    renamed = tmp_path / "weights.pt"
    shutil.copy(path, renamed)
    assert is_torchscript(path) and is_torchscript(renamed)
    assert not is_torchscript(FIXTURES / "yolov8-tiny-shapes.pt")  # a reference checkpoint (also a zip)
    (tmp_path / "x.txt").write_text("hello")
    assert not is_torchscript(tmp_path / "x.txt")


@pytest.mark.slow
def test_facade_export_predict_and_val(tmp_path):
    from yolokit import YOLO
    from yolokit.data.synth import make_synthetic_dataset

    source = FIXTURES / "yolo11-tiny-shapes.pt"
    path = YOLO(source).export(format="torchscript", imgsz=160, file=str(tmp_path / "m.torchscript"))
    meta = read_torchscript_metadata(path)
    assert meta["precision"] == "fp32" and meta["parity"]["box_max_abs_px"] <= 1e-3 and meta["latency_ms"] > 0
    image = str(FIXTURES / "images" / "00001.jpg")
    loaded = YOLO(path)
    got = loaded.predict(image, imgsz=160, conf=0.1, verbose=False)[0].boxes
    ref = YOLO(source).predict(image, imgsz=160, conf=0.1, engine="eager", verbose=False)[0].boxes
    assert len(got) == len(ref) > 0
    torch.testing.assert_close(got.data, ref.data, rtol=0, atol=1e-3)
    yaml = make_synthetic_dataset(tmp_path / "shapes", n_train=1, n_val=8, imgsz=160, seed=0)
    metrics = loaded.val(data=str(yaml), imgsz=160, plots=False, project=str(tmp_path / "runs"), verbose=False)
    expected = YOLO(source).val(data=str(yaml), imgsz=160, plots=False, engine="eager", project=str(tmp_path / "r2"),
                                verbose=False)
    assert metrics.map == pytest.approx(expected.map, abs=1e-3) and metrics.map50 > 0
