import pytest

from yolokit.config import PredictConfig, ValConfig, make_config, parse_key_values
from yolokit.errors import ConfigError


def test_defaults_follow_reference_predict_and_val():
    predict, val = PredictConfig(), ValConfig()
    assert (predict.conf, predict.iou, predict.max_det, predict.imgsz) == (0.25, 0.7, 300, 640)
    assert (val.conf, val.iou, val.batch) == (0.001, 0.7, 16)


def test_cli_strings_are_converted_to_the_annotated_types():
    cfg = make_config(PredictConfig, parse_key_values(["conf=0.5", "imgsz=320", "classes=0,2", "save=True",
                                                      "half=false", "line_width=None"]))
    assert cfg.conf == 0.5 and cfg.imgsz == 320 and cfg.classes == (0, 2)
    assert cfg.save is True and cfg.half is False and cfg.line_width is None


def test_list_syntax_and_python_values():
    assert make_config(PredictConfig, classes="[1, 3]").classes == (1, 3)
    assert make_config(PredictConfig, classes=[4]).classes == (4,)
    assert make_config(PredictConfig, imgsz="(320, 480)").imgsz == (320, 480)
    assert make_config(PredictConfig, imgsz=416).imgsz == 416


def test_unknown_key_names_the_closest_valid_key():
    with pytest.raises(ConfigError, match="unknown predict setting 'cnf': did you mean 'conf'"):
        make_config(PredictConfig, cnf=0.3)


def test_unknown_key_without_close_match_lists_keys():
    with pytest.raises(ConfigError, match="valid keys: .*conf"):
        make_config(PredictConfig, zzzzzz=1)


@pytest.mark.parametrize("key,value", [("conf", "high"), ("imgsz", "3.5"), ("save", "maybe"), ("classes", "a,b")])
def test_bad_values_name_key_expected_type_and_value(key, value):
    with pytest.raises(ConfigError, match=f"setting '{key}' expects .*found '{value}'"):
        make_config(PredictConfig, **{key: value})


def test_word_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="expected key=value, found 'conf'"):
        parse_key_values(["conf"])


def test_configs_are_frozen():
    cfg = PredictConfig()
    with pytest.raises(AttributeError):
        cfg.conf = 0.9  # type: ignore[misc]


# --- ranges: every bad value is a ConfigError when the settings object is built -------------------------------------
import dataclasses  # noqa: E402
import logging  # noqa: E402

from yolokit.config import (  # noqa: E402
    REFERENCE_ONLY,
    ExportConfig,
    InferenceConfig,
    InfoConfig,
    Settings,
    check_range,
    config_keys,
    fit_imgsz,
    flat_config,
    group,
)

BAD_PREDICT = [
    ("conf", "1.5", r"conf must be in \[0, 1\], got 1.5: pass e.g. conf=0.25"),
    ("conf", "-0.1", r"conf must be in \[0, 1\], got -0.1"),
    ("conf", "nan", r"conf must be in \[0, 1\], got nan"),
    ("iou", "2", r"iou must be in \[0, 1\], got 2.0: pass e.g. iou=0.7"),
    ("imgsz", "-5", r"imgsz must be a size in 1..8192 pixels .*got -5: pass e.g. imgsz=640"),
    ("imgsz", "0", r"imgsz must be a size in 1..8192 pixels"),
    ("imgsz", "9000", r"imgsz must be a size in 1..8192 pixels .*got 9000"),
    ("imgsz", "(320, 0)", r"imgsz must be a size .*got \(320, 0\)"),
    ("batch", "0", r"batch must be >= 1, got 0: pass e.g. batch=1"),
    ("max_det", "0", r"max_det must be >= 1, got 0: pass e.g. max_det=300"),
    ("vid_stride", "0", r"vid_stride must be >= 1, got 0"),
    ("line_width", "-3", r"line_width must be in \[1, 8192\], got -3"),
    ("line_width", "0", r"line_width must be in \[1, 8192\], got 0"),
    ("classes", "0,-1", r"classes must be >= 0, got -1"),
    ("engine", "turbo", r"engine must be one of auto, eager, channels_last, jit, onnxruntime, got 'turbo'"),
    ("device", "gpu", r"device must be 'cpu', 'cuda', 'cuda:N', a GPU index N or 'mps', got 'gpu'"),
    ("device", "cuda:x", r"device must be 'cpu', 'cuda'"),
    ("half", "maybe", r"setting 'half' expects bool, found 'maybe'"),
]


@pytest.mark.parametrize("key,value,message", BAD_PREDICT)
def test_bad_predict_values_are_one_line_config_errors(key, value, message):
    with pytest.raises(ConfigError, match=message) as info:
        make_config(PredictConfig, {key: value})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("cls,key,value,message", [
    (ValConfig, "conf", 1.5, r"conf must be in \[0, 1\], got 1.5: pass e.g. conf=0.001"),
    (ValConfig, "batch", 0, r"batch must be >= 1, got 0: pass e.g. batch=16"),
    (ValConfig, "workers", -1, r"workers must be >= 0, got -1"),
    (ValConfig, "imgsz", -1, r"imgsz must be a size in 1..8192"),
    (ExportConfig, "imgsz", 0, r"imgsz must be a size in 1..8192"),
    (ExportConfig, "format", "tflite", r"format must be one of onnx, torchscript, safetensors, pt, got 'tflite'"),
    (ExportConfig, "opset", 3, r"opset must be >= 7, got 3"),
    (InfoConfig, "imgsz", -1, r"imgsz must be a size in 1..8192"),
])
def test_bad_values_of_other_modes(cls, key, value, message):
    with pytest.raises(ConfigError, match=message):
        make_config(cls, **{key: value})


def test_direct_construction_is_checked_too():
    with pytest.raises(ConfigError, match="conf must be in"):
        PredictConfig(conf=1.5)
    with pytest.raises(ConfigError, match="batch must be >= 1"):
        dataclasses.replace(ValConfig(), batch=0)


def test_bounds_are_inclusive_and_values_normalised():
    cfg = make_config(PredictConfig, conf=0, iou=1, imgsz=8192, max_det=1, line_width=None, classes=[0])
    assert (cfg.conf, cfg.iou, cfg.imgsz, cfg.max_det, cfg.classes) == (0.0, 1.0, 8192, 1, (0,))
    assert make_config(PredictConfig, imgsz=1).imgsz == 1  # tiny sizes are rounded up to the stride by the facade
    assert make_config(PredictConfig, device="0").device == "cuda:0"  # a GPU index, as the reference accepts
    assert make_config(ValConfig, device=" CUDA:1 ").device == "cuda:1"
    with pytest.raises(ConfigError, match="engine='onnxruntime' runs on the CPU, got device='cuda'"):
        make_config(PredictConfig, engine="onnxruntime", device="cuda")


def test_predict_and_val_share_one_base():
    shared = set(config_keys(InferenceConfig))
    assert {"conf", "iou", "imgsz", "max_det", "nms", "end2end", "batch", "half", "device", "engine", "project",
            "name", "exist_ok", "verbose"} == shared
    assert issubclass(PredictConfig, InferenceConfig) and issubclass(ValConfig, InferenceConfig)
    assert shared <= set(config_keys(PredictConfig)) and shared <= set(config_keys(ValConfig))
    assert (ValConfig().name, PredictConfig().name, ValConfig().batch, PredictConfig().batch) == ("val", "predict",
                                                                                                 16, 1)


def test_check_range_messages():
    assert check_range("x", 3, ge=3) == 3
    with pytest.raises(ConfigError, match=r"^lr must be > 0, got 0: pass e.g. lr=0.01$"):
        check_range("lr", 0, gt=0, example=0.01)
    with pytest.raises(ConfigError, match=r"^m must be in \[0, 1\), got 1$"):
        check_range("m", 1, ge=0, lt=1)
    with pytest.raises(ConfigError, match=r"^f must be in \(0, 1\], got 0.0$"):
        check_range("f", 0.0, gt=0, le=1)
    with pytest.raises(ConfigError, match=r"^n must be <= 5, got 6$"):
        check_range("n", 6, le=5)
    with pytest.raises(ConfigError, match="got True"):
        check_range("n", True, ge=0)  # a bool is not a number here


def test_fit_imgsz_rounds_up_to_the_stride_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="yolokit"):
        assert fit_imgsz(320, 32) == 320
        assert not caplog.records
        assert fit_imgsz(300, 32) == 320 and fit_imgsz(1, 32) == 32
        assert fit_imgsz((300, 481), 32) == (320, 512) and fit_imgsz([64, 64], 32) == (64, 64)
    assert "imgsz=300 is not a multiple of the model stride 32: using 320" in caplog.text


# --- settings the reference has and yolokit does not ----------------------------------------------------------------
@pytest.mark.parametrize("key", ["show", "augment", "visualize", "save_frames", "tracker"])
def test_reference_only_settings_say_not_supported(key):
    with pytest.raises(ConfigError, match=f"predict setting '{key}' .*is not supported by yolokit: ") as info:
        make_config(PredictConfig, **{key: True})
    assert "did you mean" not in str(info.value) and REFERENCE_ONLY[key] in str(info.value)


def test_only_close_or_known_alias_matches_are_suggested():
    with pytest.raises(ConfigError, match="did you mean 'conf'"):
        make_config(PredictConfig, conf_thres=0.3)
    with pytest.raises(ConfigError, match="did you mean 'batch'"):
        make_config(ValConfig, batch_size=8)
    with pytest.raises(ConfigError, match="valid keys:"):
        make_config(PredictConfig, epochs=3)  # 'plots' (0.55) is not close enough to suggest


# --- grouped settings -----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Aug(Settings):
    mosaic: float = 1.0
    degrees: float = 0.0

    def check(self) -> None:
        self.check_range("mosaic", ge=0, le=1)


@dataclasses.dataclass(frozen=True)
class _Train(Settings):
    epochs: int = 100
    cls: float = 0.5  # a key named like make_config's first parameter
    aug: _Aug = group(_Aug)

    def check(self) -> None:
        self.check_range("epochs", ge=1)


def test_groups_are_nested_objects_with_flat_keys():
    assert config_keys(_Train) == ["epochs", "cls", "mosaic", "degrees"]
    cfg = make_config(_Train, parse_key_values(["mosaic=0.5", "aug.degrees=10", "epochs=3", "cls=1.5"]))
    assert cfg.aug == _Aug(mosaic=0.5, degrees=10.0) and (cfg.epochs, cfg.cls) == (3, 1.5)
    assert make_config(_Train).aug == _Aug()
    assert flat_config(cfg) == {"epochs": 3, "cls": 1.5, "mosaic": 0.5, "degrees": 10.0}
    with pytest.raises(ConfigError, match=r"mosaic must be in \[0, 1\], got 2.0"):
        make_config(_Train, mosaic=2)
    with pytest.raises(ConfigError, match="unknown _train setting 'mosiac': did you mean 'mosaic'"):
        make_config(_Train, mosiac=0.5)


def test_a_key_defined_twice_across_groups_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Clash(Settings):
        mosaic: float = 0.0
        aug: _Aug = group(_Aug)

    with pytest.raises(ConfigError, match="key 'mosaic' is defined twice"):
        config_keys(Clash)
