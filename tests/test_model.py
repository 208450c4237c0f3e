"""The YOLO facade: building, loading by content, info, predict, save/reload, backend reuse."""

import shutil
from pathlib import Path

import pytest
import torch

from yolokit import YOLO
from yolokit.errors import ConfigError, WeightsError

FIXTURES = Path(__file__).parent / "fixtures"
SHAPES = FIXTURES / "yolo11-tiny-shapes.pt"
IMAGE = FIXTURES / "images" / "00000.jpg"


def test_spec_name_builds_random_model_with_scale_from_name():
    nano, small = YOLO("yolo26n.yaml"), YOLO("yolo26s")
    assert nano.info(verbose=False)[1] == 2_572_280
    assert small.info(verbose=False)[1] > 3 * 2_572_280
    assert isinstance(nano.model, torch.nn.Module) and nano.task == "detect"
    assert len(nano.names) == 80


def test_num_classes_override_changes_head():
    model = YOLO("yolo11n.yaml", num_classes=3)
    assert model.model.nc == 3 and len(model.names) == 3


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsError, match="weights file not found: .*missing.pt"):
        YOLO(tmp_path / "missing.pt")


def test_wrong_source_type():
    with pytest.raises(ConfigError, match="YOLO\\(\\) expects"):
        YOLO(42)  # type: ignore[arg-type]


def test_reference_checkpoint_loads_by_content_even_when_misnamed(tmp_path):
    misnamed = tmp_path / "weights.bin"
    shutil.copy(SHAPES, misnamed)
    model = YOLO(misnamed)
    assert model.names == {0: "rectangle", 1: "ellipse", 2: "triangle"}
    assert model.metadata["provenance"]["source"] == "ultralytics"


def test_predict_save_and_reload_give_identical_detections(tmp_path):
    model = YOLO(SHAPES)
    before = model(str(IMAGE), imgsz=320, conf=0.05)[0]
    assert len(before.boxes) > 0
    for suffix in (".safetensors", ".pt"):
        reloaded = YOLO(model.save(tmp_path / f"copy{suffix}"))
        after = reloaded.predict(str(IMAGE), imgsz=320, conf=0.05)[0]
        assert torch.equal(after.boxes.data, before.boxes.data)
        assert reloaded.metadata["provenance"]["reference_version"] == model.metadata["provenance"][
            "reference_version"]


def test_backend_is_reused_until_weights_change():
    model = YOLO(SHAPES)
    first = model._backend("cpu", False)
    assert model._backend("cpu", False) is first
    with torch.no_grad():
        next(model.model.parameters()).mul_(0.5)
    assert model._backend("cpu", False) is not first


def test_fuse_keeps_detections():
    model = YOLO(SHAPES)
    before = model(str(IMAGE), imgsz=320, conf=0.05)[0].boxes.data
    model.fuse()
    after = model(str(IMAGE), imgsz=320, conf=0.05)[0].boxes.data
    assert before.shape == after.shape
    assert torch.allclose(before, after, atol=1e-3)


def test_unknown_predict_setting_is_rejected():
    with pytest.raises(ConfigError, match="did you mean 'iou'"):
        YOLO("yolo26n.yaml").predict(str(IMAGE), iuo=0.5)


def test_engines_give_the_same_detections():
    model = YOLO(SHAPES)
    boxes = {engine: model(str(IMAGE), imgsz=320, conf=0.05, engine=engine)[0].boxes.data
             for engine in ("eager", "channels_last", "jit")}
    assert boxes["eager"].shape == boxes["jit"].shape == boxes["channels_last"].shape
    assert torch.allclose(boxes["eager"], boxes["jit"], atol=1e-3)
    assert torch.allclose(boxes["eager"], boxes["channels_last"], atol=1e-3)
    with pytest.raises(ConfigError, match="engine must be one of"):
        model(str(IMAGE), engine="turbo")
