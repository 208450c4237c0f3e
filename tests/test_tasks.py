"""The task table: registration rules, lazy references, the detect entry."""

import importlib.util
import subprocess
import sys

import pytest

from yolokit import tasks
from yolokit.errors import ConfigError
from yolokit.tasks import TaskRegistry, TaskSpec, get_task, resolve, task_for_head, task_names

ROLES = ("build_model", "predictor", "validator", "trainer", "results", "metrics", "predict_config", "val_config",
         "train_config")


def _spec(name="toy", heads=("ToyHead",), **roles):
    return TaskSpec(name=name, heads=heads, **{role: roles.get(role, "yolokit.config:PredictConfig")
                                                for role in ROLES})


def test_detect_and_classify_are_registered():
    assert task_names() == ("detect", "classify")
    assert task_for_head("Classify") is get_task("classify")
    assert task_for_head("Detect") is get_task("detect") and task_for_head("nn.Detect").name == "detect"


def test_duplicates_are_refused_and_unknown_names_list_the_known_ones():
    table = TaskRegistry()
    table.register(_spec("toy"))
    with pytest.raises(ConfigError, match="^task 'toy' is already registered: pick another name$"):
        table.register(_spec("toy", heads=("Other",)))
    with pytest.raises(ConfigError, match="head type 'ToyHead' already marks task 'toy'"):
        table.register(_spec("toy2"))
    table.register(_spec("toy2", heads=("Toy2Head",)))
    with pytest.raises(ConfigError, match="^unknown task 'segment': yolokit knows toy, toy2$"):
        table.get("segment")
    with pytest.raises(ConfigError, match="no task has head type 'Classify'.*ToyHead \\(toy\\)"):
        table.for_head("Classify")
    with pytest.raises(ConfigError, match="register_task expects a TaskSpec"):
        table.register({"name": "x"})  # type: ignore[arg-type]


def test_the_package_table_refuses_a_second_detect():
    with pytest.raises(ConfigError, match="task 'detect' is already registered"):
        tasks.register_task(_spec("detect", heads=("Detect2",)))
    assert task_names() == ("detect", "classify")


def test_references_resolve_lazily_with_one_line_errors():
    from yolokit.config import PredictConfig

    assert resolve("yolokit.config:PredictConfig") is PredictConfig
    assert resolve(PredictConfig) is PredictConfig  # objects pass through
    with pytest.raises(ConfigError, match="yolokit.nowhere is missing"):
        resolve("yolokit.nowhere:thing", what="trainer of task 'x'")
    with pytest.raises(ConfigError, match="yolokit.config has no attribute 'Nope'"):
        resolve("yolokit.config:Nope")
    with pytest.raises(ConfigError, match="expected 'package.module:attribute'"):
        resolve("yolokit.config.PredictConfig")
    with pytest.raises(ConfigError, match="has no role 'painter'"):
        get_task("detect").load("painter")


def test_detect_entry_points_at_the_detection_implementations():
    from yolokit.config import PredictConfig, ValConfig
    from yolokit.eval.validator import validate
    from yolokit.models.builder import build_model
    from yolokit.predict.predictor import Predictor

    detect = get_task("detect")
    assert detect.load("build_model") is build_model and detect.load("predictor") is Predictor
    assert detect.load("validator") is validate
    assert (detect.load("predict_config"), detect.load("val_config")) == (PredictConfig, ValConfig)
    assert detect.load("results").__name__ == "Results" and detect.load("metrics").__name__ == "DetectionMetrics"
    assert detect.trainer == "yolokit.train.api:train" and detect.train_config == "yolokit.train.config:TrainConfig"
    if importlib.util.find_spec("yolokit.train.api") is None:
        with pytest.raises(ConfigError, match="trainer of task 'detect' is not available .*yolokit.train.api"):
            detect.load("trainer")
    else:
        assert callable(detect.load("trainer"))


def test_the_table_imports_nothing_heavy():
    code = "import sys, yolokit.tasks as t; t.get_task('detect'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "False"
