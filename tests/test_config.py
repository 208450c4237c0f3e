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
