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


# --- settings are checked before any model runs ---------------------------------------------------------------------
import logging  # noqa: E402

from yolokit import tasks  # noqa: E402
from yolokit.models.detector import DetectionModel  # noqa: E402


@pytest.fixture(scope="module")
def shapes():
    return YOLO(SHAPES)  # 3 classes: rectangle, ellipse, triangle


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a backend is built or a network runs."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model ran before the bad setting was reported")

    monkeypatch.setattr(YOLO, "_backend", refuse)
    monkeypatch.setattr(DetectionModel, "forward", refuse)


BAD_PREDICT = [
    ({"conf": 1.5}, r"conf must be in \[0, 1\], got 1.5"),
    ({"iou": 2}, r"iou must be in \[0, 1\], got 2"),
    ({"imgsz": -5}, "imgsz must be a size in 1..8192"),
    ({"imgsz": 0}, "imgsz must be a size in 1..8192"),
    ({"imgsz": 9000}, "imgsz must be a size in 1..8192"),
    ({"batch": 0}, "batch must be >= 1, got 0"),
    ({"max_det": 0}, "max_det must be >= 1, got 0"),
    ({"vid_stride": 0}, "vid_stride must be >= 1, got 0"),
    ({"line_width": -3}, r"line_width must be in \[1, 8192\], got -3"),
    ({"classes": [-1]}, "classes must be >= 0, got -1"),
    ({"classes": [0, 3]}, r"classes must be class ids of this model \(0..2\), got 3"),
    ({"engine": "turbo"}, "engine must be one of"),
    ({"device": "gpu"}, "device must be 'cpu', 'cuda'"),
    ({"half": "maybe"}, "setting 'half' expects bool"),
    ({"show": True}, "'show' .*is not supported by yolokit"),
    ({"augment": True}, "'augment' .*is not supported by yolokit"),
]


@pytest.mark.parametrize("settings,message", BAD_PREDICT)
def test_bad_predict_setting_is_a_config_error_before_any_work(shapes, no_work, settings, message):
    with pytest.raises(ConfigError, match=message) as info:
        shapes.predict(str(IMAGE), **settings)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "mps"])
def test_missing_accelerator_is_a_config_error_not_a_traceback(shapes, no_work, device):
    present = torch.cuda.is_available() if device.startswith("cuda") else torch.backends.mps.is_available()
    if present:
        pytest.skip(f"{device} is present on this machine")
    with pytest.raises(ConfigError, match=f"device='{device}' needs .*pass device=cpu"):
        shapes.predict(str(IMAGE), device=device)


@pytest.mark.parametrize("settings,message", [
    ({"conf": 1.5}, r"conf must be in \[0, 1\]"),
    ({"batch": 0}, "batch must be >= 1"),
    ({"workers": -1}, "workers must be >= 0"),
    ({"imgsz": 0}, "imgsz must be a size"),
    ({"device": "gpu"}, "device must be"),
    ({"single_cls": True}, "'single_cls' .*is not supported by yolokit"),
])
def test_bad_val_setting_is_a_config_error_before_the_dataset_is_read(shapes, no_work, tmp_path, settings,
                                                                      message):
    with pytest.raises(ConfigError, match=message):
        shapes.val(data=str(tmp_path / "missing.yaml"), **settings)  # a missing dataset would be a DatasetError
    with pytest.raises(ConfigError, match=message):
        shapes.val(**settings)  # no data=: the bad setting is named first, not the missing dataset


def test_bad_export_and_info_settings(shapes, no_work, tmp_path):
    with pytest.raises(ConfigError, match="imgsz must be a size"):
        shapes.export(imgsz=0, file=str(tmp_path / "x.onnx"))
    with pytest.raises(ConfigError, match="opset must be >= 7"):
        shapes.export(opset=3, file=str(tmp_path / "x.onnx"))
    assert not (tmp_path / "x.onnx").exists()
    with pytest.raises(ConfigError, match="imgsz must be a size"):
        shapes.info(imgsz=-1)


def test_imgsz_is_rounded_up_to_the_stride_with_a_warning(shapes, caplog):
    expected = shapes(str(IMAGE), imgsz=320, conf=0.05, verbose=False)[0].boxes.data
    with caplog.at_level(logging.WARNING, logger="yolokit"):
        got = shapes(str(IMAGE), imgsz=300, conf=0.05, verbose=False)[0].boxes.data
    assert "imgsz=300 is not a multiple of the model stride 32: using 320" in caplog.text
    assert caplog.text.count("not a multiple") == 1  # said once, by the facade
    assert torch.equal(got, expected)


# --- the task table -------------------------------------------------------------------------------------------------
def test_task_comes_from_the_loaded_source(shapes):
    assert shapes.task == "detect" and shapes.task_spec is tasks.get_task("detect")
    assert shapes.metadata["task"] == "detect" == shapes.model.task
    assert YOLO(SHAPES, task="detect").task == "detect"
    with pytest.raises(ConfigError, match="^unknown task 'segment': yolokit knows detect, classify$"):
        YOLO(SHAPES, task="segment")
    with pytest.raises(ConfigError, match="does not say its task"):
        YOLO(torch.nn.Linear(2, 2))


def _fake_task(monkeypatch, **roles):
    """A fresh table holding 'detect' and a 'fake' task whose entries are the given objects."""
    table = tasks.TaskRegistry()
    detect = table.register(tasks.get_task("detect"))
    fields = {f: getattr(detect, f) for f in ("build_model", "predictor", "validator", "trainer", "results",
                                              "metrics", "predict_config", "val_config", "train_config")}
    table.register(tasks.TaskSpec(name="fake", heads=("FakeHead",), **{**fields, **roles}))
    monkeypatch.setattr(tasks, "TASKS", table)


def test_modes_take_their_implementation_from_the_task_table(shapes, monkeypatch):
    calls = []

    class FakePredictor:
        def __init__(self, backend, config):
            calls.append((backend, config.conf))

        def predict(self, source):
            return ["fake result for " + source]

    _fake_task(monkeypatch, predictor=FakePredictor, validator=lambda backend, config: ("fake metrics", config.data))
    model = shapes.model
    monkeypatch.setattr(model, "task", "fake")
    fake = YOLO(model)
    monkeypatch.setattr(YOLO, "_backend", lambda self, *args: "backend")
    assert fake.task == "fake"
    assert fake.predict("x.jpg", conf=0.5) == ["fake result for x.jpg"] and calls == [("backend", 0.5)]
    assert fake.val(data="d.yaml") == ("fake metrics", "d.yaml")
    with pytest.raises(ConfigError, match="task='detect' was asked for, but the DetectionModel passed is a 'fake'"):
        YOLO(model, task="detect")


def test_saved_metadata_takes_the_task_from_the_model(shapes, monkeypatch, tmp_path):
    monkeypatch.setattr(shapes.model, "task", "fake")  # a task the weights format does not know
    with pytest.raises(WeightsError, match="fake"):
        shapes.save(tmp_path / "w.safetensors")  # so the metadata's task was read from the model


def test_imgsz_defaults_to_the_size_the_weights_record(shapes, monkeypatch):
    import yolokit.eval.validator
    import yolokit.predict.predictor

    seen = []

    class Recorder:
        def __init__(self, backend, config):
            seen.append(config.imgsz)

        def predict(self, source):
            return []

    monkeypatch.setattr(yolokit.predict.predictor, "Predictor", Recorder)
    monkeypatch.setattr(yolokit.eval.validator, "validate", lambda backend, config: seen.append(config.imgsz))
    monkeypatch.setattr(YOLO, "_backend", lambda self, *args: "backend")
    assert shapes.metadata["imgsz"] == 320  # the fixture was trained at 320
    shapes.predict("x.jpg")
    shapes.predict("x.jpg", imgsz=640)
    shapes.val(data="d.yaml")
    monkeypatch.setitem(shapes.metadata, "imgsz", [256, 320])  # an export shape (h, w)
    shapes.predict("x.jpg")
    shapes.val(data="d.yaml")
    assert seen == [320, 640, 320, (256, 320), 320]
    assert YOLO("yolo26n.yaml").metadata == {}  # a spec records nothing: the settings' default (640) applies
