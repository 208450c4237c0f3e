import pytest

from yolokit import __version__
from yolokit.cli import main


def test_version(capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == __version__


def test_help_lists_modes(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for mode in ("predict", "val", "inspect", "convert", "data synth", "info"):
        assert mode in out


def test_unknown_mode_is_one_line_error_exit_2(capsys):
    assert main(["predcit"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'predict'" in err


@pytest.mark.parametrize("argv,message", [
    (["info"], "info needs model="),
    (["info", "model=yolo26n.yaml", "detaild=True"], "did you mean 'detailed'"),
    (["predict", "model=yolo26n.yaml"], "predict needs source="),
    (["predict", "model=yolo26n.yaml", "source=x.jpg", "cnf=0.2"], "did you mean 'conf'"),
    (["val", "model=yolo26n.yaml", "dta=x.yaml"], "did you mean 'data'"),
    (["info", "yolo26n.yaml"], "expected key=value"),
])
def test_argument_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# --- bad settings: exit 2, one line, before any model is loaded ------------------------------------------------------
from pathlib import Path  # noqa: E402

SHAPES = Path(__file__).parent / "fixtures" / "yolo11-tiny-shapes.pt"
PREDICT = ["predict", f"model={SHAPES}", "source=x.jpg"]


@pytest.fixture
def no_model(monkeypatch):
    from yolokit.model import YOLO

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the bad setting was reported")

    monkeypatch.setattr(YOLO, "__init__", refuse)


def _one_line_error(argv, capsys) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("Error: ")
    return captured.err


@pytest.mark.parametrize("argv,message", [
    ([*PREDICT, "conf=1.5"], "conf must be in [0, 1], got 1.5"),
    ([*PREDICT, "iou=2"], "iou must be in [0, 1], got 2.0"),
    ([*PREDICT, "imgsz=-5"], "imgsz must be a size in 1..8192"),
    ([*PREDICT, "imgsz=0"], "imgsz must be a size in 1..8192"),
    ([*PREDICT, "imgsz=9000"], "imgsz must be a size in 1..8192"),
    ([*PREDICT, "batch=0"], "batch must be >= 1, got 0"),
    ([*PREDICT, "max_det=0"], "max_det must be >= 1, got 0"),
    ([*PREDICT, "vid_stride=0"], "vid_stride must be >= 1, got 0"),
    ([*PREDICT, "line_width=-3"], "line_width must be in [1, 8192], got -3"),
    ([*PREDICT, "classes=-1"], "classes must be >= 0, got -1"),
    ([*PREDICT, "engine=turbo"], "engine must be one of"),
    ([*PREDICT, "device=gpu"], "device must be 'cpu', 'cuda'"),
    ([*PREDICT, "half=maybe"], "setting 'half' expects bool"),
    ([*PREDICT, "show=True"], "'show' (of the reference implementation) is not supported by yolokit"),
    ([*PREDICT, "augment=True"], "'augment' (of the reference implementation) is not supported"),
    ([*PREDICT, "visualize=True"], "'visualize' (of the reference implementation) is not supported"),
    ([*PREDICT, "save_frames=True"], "'save_frames' (of the reference implementation) is not supported"),
    ([*PREDICT, "tracker=bytetrack.yaml"], "'tracker' (of the reference implementation) is not supported"),
    (["val", f"model={SHAPES}", "data=d.yaml", "conf=1.5"], "conf must be in [0, 1]"),
    (["val", f"model={SHAPES}", "data=d.yaml", "batch=0"], "batch must be >= 1"),
    (["val", f"model={SHAPES}", "data=d.yaml", "workers=-1"], "workers must be >= 0"),
    (["export", f"model={SHAPES}", "imgsz=0"], "imgsz must be a size"),
    (["export", f"model={SHAPES}", "format=tflite"], "format must be one of onnx, torchscript, safetensors, pt"),
    (["info", f"model={SHAPES}", "imgsz=-1"], "imgsz must be a size"),
    (["detect", *PREDICT, "conf=1.5"], "conf must be in [0, 1]"),
])
def test_bad_settings_exit_2_with_one_line_before_loading(argv, message, no_model, capsys):
    assert message in _one_line_error(argv, capsys)


def test_settings_that_need_the_model_fail_before_it_runs(monkeypatch, capsys):
    from yolokit.model import YOLO

    def refuse(*args, **kwargs):
        raise AssertionError("a backend was built before the bad setting was reported")

    monkeypatch.setattr(YOLO, "_backend", refuse)
    assert "classes must be class ids of this model (0..2), got 5" in _one_line_error([*PREDICT, "classes=5"], capsys)


# --- yolokit [TASK] MODE ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv,message", [
    (["segment", "predict", f"model={SHAPES}"], "unknown task 'segment': yolokit knows detect"),
    (["detcet", "predict", f"model={SHAPES}"], "unknown task 'detcet': yolokit knows detect"),
    (["predict", "task=pose", f"model={SHAPES}", "source=x.jpg"], "unknown task 'pose': yolokit knows detect"),
    (["classify"], "'yolokit classify' needs a mode"),
    (["detect"], "'yolokit detect' needs a mode"),
    (["detect", "inspect", "x.pt"], "mode 'inspect' takes no task"),
    (["track", f"model={SHAPES}"], "tracking is not supported by yolokit"),
    (["detect", "track"], "tracking is not supported by yolokit"),
])
def test_task_words_and_unsupported_modes(argv, message, no_model, capsys):
    assert message in _one_line_error(argv, capsys)


def test_task_then_mode_runs_like_mode(capsys):
    spec = str(Path(__file__).parent / "fixtures" / "yolo11-tiny.yaml")
    assert main(["detect", "info", f"model={spec}", "imgsz=64"]) == 0
    with_task = capsys.readouterr().out
    assert main(["info", f"model={spec}", "imgsz=64"]) == 0
    assert with_task == capsys.readouterr().out and "summary:" in with_task
