"""First-use friction (issue 17, items 1-10): what a user of the reference implementation meets first.

Each test names its item. The models are the tiny committed fixtures; data is made in ``tmp_path``.
"""

from __future__ import annotations

import io
import logging
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

from yolokit import YOLO
from yolokit.utils.log import verbosity

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHAPES = FIXTURES / "yolo26-tiny-shapes.pt"  # 3 classes, trained by the reference at imgsz 320


@contextmanager
def _no_handlers():
    """Logging as a fresh Python process has it: no handler anywhere (pytest's capture handlers, which it adds to
    the root logger at the start of each test phase, are taken off for the block)."""
    root, logger = logging.getLogger(), logging.getLogger("yolokit")
    saved = (list(root.handlers), list(logger.handlers), logger.level)
    root.handlers.clear()
    logger.handlers.clear()
    logger.setLevel(logging.NOTSET)
    try:
        yield logger
    finally:
        root.handlers[:] = saved[0]
        logger.handlers[:] = saved[1]
        logger.setLevel(saved[2])


@pytest.fixture
def tiny_data(tmp_path):
    from yolokit.data.synth import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path / "data", n_train=2, n_val=3, imgsz=64, seed=0)


# --- item 1: the Python API prints what the CLI prints -------------------------------------------------------------
def test_info_prints_its_summary_without_any_logging_setup(capsys):
    with _no_handlers() as bare_logging:
        YOLO(SHAPES).info()
        out = capsys.readouterr().out.splitlines()
        assert out[0] == "YOLO26-tiny summary: 260 layers, 201,254 parameters, 201,254 gradients, 0.6 GFLOPs"
        assert out[1].startswith("predict/val default imgsz=320 (recorded in the weights)")
        assert len(out) == 2
        assert bare_logging.handlers == [] and bare_logging.level == logging.NOTSET  # restored after the call


def test_info_detailed_prints_the_parameter_table(capsys):
    with _no_handlers():
        YOLO(SHAPES).info(detailed=True)
        out = capsys.readouterr().out.splitlines()
        assert out[0].split() == ["layer", "name", "type", "gradient", "parameters", "shape", "mu", "sigma", "dtype"]
        assert out[1].split()[1] == "model.0.conv.weight"


def test_verbose_false_silences_every_mode(capsys, tiny_data):
    with _no_handlers():
        model = YOLO(SHAPES)
        assert model.info(verbose=False)[0] == 260
        results = model.predict(FIXTURES / "images", verbose=False, engine="eager")
        model.val(data=str(tiny_data), verbose=False, engine="eager", imgsz=64, plots=False,
                  project=str(tiny_data.parent), name="v")
        assert len(results) == 4
        assert capsys.readouterr().out == ""


def test_predict_and_val_print_the_cli_lines(capsys, tiny_data):
    with _no_handlers():
        model = YOLO(SHAPES)
        model.predict(FIXTURES / "images" / "00000.jpg", engine="eager")
        out = capsys.readouterr().out
        assert "image 1/1 " in out and "00000.jpg: 320x320 " in out and out.count("image 1/1") == 1
        assert "Speed: " in out
        metrics = model.val(data=str(tiny_data), engine="eager", imgsz=64, project=str(tiny_data.parent), name="v")
        out = capsys.readouterr().out
        header = next(line for line in out.splitlines() if line.strip().startswith("Class"))
        assert header.split() == ["Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95"]
        for name in ("all", "rectangle"):
            assert any(line.split()[0] == name for line in out.splitlines() if line.strip()), name
        assert f"Results saved to {metrics.save_dir}" in out
        assert "pycocotools" in out  # item 9: the one line on how the mAP is computed


def test_streamed_predict_prints_while_iterated_and_restores(capsys):
    with _no_handlers() as bare_logging:
        stream = YOLO(SHAPES).predict(FIXTURES / "images", stream=True, engine="eager")
        assert capsys.readouterr().out == ""  # nothing runs before iteration
        assert len(list(stream)) == 4
        lines = capsys.readouterr().out.splitlines()
        assert [line.split(":")[0].split()[:2] for line in lines if line.startswith("image ")] == [
            ["image", f"{k}/4"] for k in range(1, 5)]
        assert bare_logging.handlers == [] and bare_logging.level == logging.NOTSET


def test_configured_logging_gets_each_line_once_and_stdout_none(monkeypatch, capsys):
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    monkeypatch.setattr(logging.root, "handlers", [handler])  # like logging.basicConfig(stream=sink)
    monkeypatch.setattr(logging.root, "level", logging.WARNING)  # basicConfig's default level
    logging.getLogger("yolokit").manager._clear_cache()
    YOLO(SHAPES).info()
    assert capsys.readouterr().out == ""
    assert sink.getvalue().count("summary: 260 layers") == 1


def test_caplog_sees_the_records_once(caplog, capsys):
    with caplog.at_level(logging.INFO):
        YOLO(SHAPES).info()
    assert [m for m in caplog.messages if "summary:" in m] == [
        "YOLO26-tiny summary: 260 layers, 201,254 parameters, 201,254 gradients, 0.6 GFLOPs"]
    assert capsys.readouterr().out == ""


def test_a_null_handler_silences_yolokit(capsys):
    with _no_handlers() as bare_logging:
        bare_logging.addHandler(logging.NullHandler())
        YOLO(SHAPES).info()
        assert capsys.readouterr().out == ""


def test_nested_verbosity_attaches_one_handler(capsys):
    with _no_handlers() as bare_logging:
        with verbosity(True), verbosity(True):
            assert len(bare_logging.handlers) == 1
            logging.getLogger("yolokit.x").info("once")
            with verbosity(False):
                logging.getLogger("yolokit.x").info("hidden")
                logging.getLogger("yolokit.x").warning("warned")
        assert capsys.readouterr().out.splitlines() == ["once", "warned"]
        assert bare_logging.handlers == []


def test_cli_and_python_print_the_same_info_lines(capsys):
    with _no_handlers():
        from yolokit.cli import main

        YOLO(SHAPES).info()
        python_lines = capsys.readouterr().out
        assert main(["info", f"model={SHAPES}"]) == 0
        cli_lines = capsys.readouterr().out  # the CLI also shows what loading the file says first
        assert python_lines.count("\n") == 2 and cli_lines.endswith(python_lines)


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


# --- item 3: close matches only; reference keys and modes said plainly ----------------------------------------------
# Every setting of the reference implementation 8.4.190 (its default configuration's keys).
REFERENCE_KEYS = (
    "task mode model data epochs time patience batch imgsz save save_period cache device workers project name exist_ok "
    "pretrained cls_remap optimizer verbose seed deterministic single_cls rect cos_lr close_mosaic resume amp fraction "
    "profile freeze multi_scale compile channels_last overlap_mask mask_ratio dropout val split save_json conf iou "
    "max_det quantize dnn plots nms source vid_stride stream_buffer visualize augment agnostic_nms classes "
    "retina_masks embed show save_frames save_txt save_conf save_crop show_labels show_conf show_boxes line_width "
    "format optimize dynamic simplify opset workspace lr0 lrf momentum weight_decay warmup_epochs warmup_momentum "
    "warmup_bias_lr distill_model dis box cls cls_pw dfl pose kobj rle angle dlog dgrad dlam nbs hsv_h hsv_s hsv_v "
    "degrees translate scale shear perspective flipud fliplr bgr mosaic mixup cutmix copy_paste copy_paste_mode "
    "auto_augment erasing cfg tracker"
).split()


def _mode_keys() -> dict[str, list[str]]:
    from yolokit.cli import MODEL_MODES, _mode_configs
    from yolokit.config import config_keys

    return {mode: [key for cls in _mode_configs(mode, None) for key in config_keys(cls)] for mode in MODEL_MODES}


def test_every_reference_key_is_known_supported_elsewhere_or_said_unsupported():
    from yolokit.config import unknown_key_message

    keys = _mode_keys()
    for mode, known in keys.items():
        for key in REFERENCE_KEYS:
            if key in known:
                continue
            message = unknown_key_message(key, known, mode, keys)
            assert "did you mean" not in message and "valid keys" not in message, (mode, key, message)
            assert "is not supported by yolokit" in message or "it is a setting of" in message, (mode, key)


@pytest.mark.parametrize(("mode", "word", "expected"), [
    ("predict", "show", None), ("predict", "train", None), ("predict", "augmnt", None), ("val", "nme", "name"),
    ("predict", "cnf", "conf"), ("predict", "imgsize", "imgsz"), ("predict", "save_text", "save_txt"),
    ("predict", "iuo", "iou"), ("val", "btach", "batch"), ("export", "fromat", "format"),
    ("info", "detaild", "detailed"),
    ("train", "epoch", "epochs"), ("train", "lr", "lr0"), ("train", "weight_decy", "weight_decay"),
    ("train", "mosiac", "mosaic"), ("predict", "line_thickness", "line_width"), ("train", "optimiser", "optimizer"),
])
def test_only_close_matches_are_suggested_in_every_mode(mode, word, expected):
    from yolokit.config import unknown_key_message

    keys = _mode_keys()
    message = unknown_key_message(word, keys[mode], mode)
    if expected is None:
        assert "did you mean" not in message, message
    else:
        assert f"did you mean '{expected}'?" in message, message


def test_typos_of_every_key_suggest_that_key():
    from yolokit.config import close_matches

    for mode, keys in _mode_keys().items():
        for key in keys:
            if len(key) >= 4:
                typo = key[0] + key[2:]  # one letter dropped
                assert typo in keys or close_matches(typo, keys) == [key], (mode, key, typo)


@pytest.mark.parametrize(("argv", "expected"), [
    (["predict", f"model={SHAPES}", "source=x.jpg", "epochs=3"], "predict has no setting 'epochs': it is a setting "
                                                                 "of train"),
    (["predict", f"model={SHAPES}", "source=x.jpg", "data=d.yaml"], "it is a setting of val"),
    (["predict", f"model={SHAPES}", "source=x.jpg", "show=True"], "'show' (of the reference implementation) is not "
                                                                  "supported by yolokit: there is no display window"),
    (["track", f"model={SHAPES}"], "tracking is not supported by yolokit"),
    (["trak", f"model={SHAPES}"], "unknown mode 'trak': did you mean 'track'? (tracking is not supported"),
    (["vall", f"model={SHAPES}"], "unknown mode 'vall': did you mean 'val'?"),
    (["foo"], "unknown mode 'foo': modes: "),
])
def test_cli_unknown_words_are_one_line(argv, expected, capsys):
    from yolokit.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err


# --- item 6: out-of-range values and absent GPUs: one line, exit 2, before any model loads ---------------------------
@pytest.mark.parametrize("setting", ["device=cuda", "device=cuda:1", "device=mps", "device=0", "conf=1.5", "iou=2",
                                     "imgsz=0", "device=gpu"])
def test_bad_values_stop_before_the_model_loads(setting, capsys, monkeypatch):
    import torch

    import yolokit.model
    from yolokit.cli import main

    if "cuda" in setting and torch.cuda.is_available() or "mps" in setting and torch.backends.mps.is_available():
        pytest.skip("this machine has the device")

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(yolokit.model.YOLO, "_load", refuse)
    for mode in (["predict", "source=x.jpg"], ["val", "data=d.yaml"]):
        assert main([mode[0], "model=missing-weights.pt", mode[1], setting]) == 2
        err = capsys.readouterr().err
        assert err.startswith("Error: ") and err.count("\n") == 1 and "Traceback" not in err, err


def test_python_api_refuses_an_absent_gpu_in_one_line():
    import torch

    from yolokit.errors import ConfigError

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="needs a CUDA GPU") as info:
        YOLO(SHAPES).predict(FIXTURES / "images" / "00000.jpg", device="cuda")
    assert "\n" not in str(info.value)


# --- item 7: help, settings, checks ----------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [["--help"], ["help"], ["-h"], []])
def test_top_level_help_lists_every_mode(argv, capsys):
    from yolokit.cli import COMMANDS, main

    assert main(argv) == 0
    out = capsys.readouterr().out
    listed = {line.split()[0] for line in out.splitlines() if line.startswith("  ") and len(line.split()) > 1}
    assert set(COMMANDS) <= listed
    assert "'yolokit MODE --help'" in out and '"""' not in out and "``" not in out


@pytest.mark.parametrize("mode", ["info", "predict", "val", "export"])
@pytest.mark.parametrize("form", ["--help", "-h", "help", "before"])
def test_mode_help_lists_every_key_with_type_default_and_meaning(mode, form, capsys):
    from yolokit.cli import _mode_configs, main
    from yolokit.cli_help import key_rows

    argv = ["help", mode] if form == "before" else [mode, form]
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[3:] if line.startswith("  ")}
    for cls in _mode_configs(mode, None):
        for key, kind, default, meaning in key_rows(cls):
            if key == "save" and mode == "predict" or key == "model":
                default = {"save": "True (CLI)", "model": "(required)"}[key]  # the CLI's own defaults
                meaning = rows[key].split(default, 1)[1].strip()
            assert key in rows, (mode, key)
            assert kind in rows[key] and default in rows[key] and meaning and meaning in rows[key], (key, rows[key])


def test_every_key_of_every_mode_has_a_meaning():
    from yolokit.cli import MODEL_MODES, _mode_configs
    from yolokit.cli_help import key_rows

    for mode in MODEL_MODES:
        for cls in _mode_configs(mode, None):
            missing = [key for key, _, _, meaning in key_rows(cls) if not meaning]
            assert not missing, f"{cls.__name__}: write a '# comment' on the line of {missing}"


def test_field_comments_come_from_the_source():
    from yolokit.cli_help import field_help
    from yolokit.config import PredictConfig, ValConfig

    assert field_help(PredictConfig)["conf"] == "minimum confidence of a kept box"  # inherited from InferenceConfig
    assert field_help(ValConfig)["data"] == "dataset YAML (or COCO JSON) path"


def test_settings_and_checks(capsys, monkeypatch, tmp_path):
    from yolokit.cli import main

    monkeypatch.setenv("YOLOKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("YOLOKIT_REGISTRY", str(tmp_path / "reg"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert f"cache dir             {tmp_path / 'cache'}" in out and f"{tmp_path / 'reg'}" in out
    assert "1 per inference session (OMP_NUM_THREADS=1" in out and "YOLOKIT_WEIGHTS_URL unset" in out
    assert main(["checks"]) == 0
    out = capsys.readouterr().out
    import numpy
    import onnxruntime
    import torch

    assert f"torch        {torch.__version__}" in out and f"numpy        {numpy.__version__}" in out
    assert "CPUExecutionProvider" in out and f"onnxruntime  {onnxruntime.__version__}" in out
    assert main(["settings", "cache=/x"]) == 2


# --- item 2: defaults from the weights, said by info and inspect --------------------------------------------------
def test_info_and_inspect_say_which_imgsz_is_used(capsys):
    from yolokit.cli import main

    assert main(["info", "model=yolo26n.yaml"]) == 0
    assert "predict/val default imgsz=640 (yolokit's default: the weights record no size)" in capsys.readouterr().out
    assert main(["inspect", str(SHAPES)]) == 0
    assert "Input       imgsz 320 (predict/val default), stride [8, 16, 32]" in capsys.readouterr().out


# --- item 4: files yolokit cannot read yet say what they are -------------------------------------------------------
def _foreign_helpers():
    import importlib.util

    spec = importlib.util.spec_from_file_location("friction_foreign_helpers", FIXTURES.parent / "weights" /
                                                  "foreign_helpers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


YOLOV5 = Path("/work/shared/fixtures/yolov5/yolov5n.pt")  # AGPL weights: used from there only, never committed


def _assert_family_error(path: Path, words: str) -> None:
    from yolokit.errors import UnsafeWeightsError, WeightsError

    with pytest.raises(WeightsError) as info:
        YOLO(path)
    message = str(info.value)
    assert not isinstance(info.value, UnsafeWeightsError) and "\n" not in message, message
    assert words in message and "supported" in message, message
    assert "UNSAFE" not in message.upper().replace("UNSUPPORTED", "") and "sources you trust" not in message


@pytest.mark.skipif(not YOLOV5.is_file(), reason="the shared YOLOv5 fixture is absent")
def test_a_yolov5_checkpoint_loads_or_says_so_in_words(capsys):
    from yolokit.cli import main
    from yolokit.errors import WeightsError

    try:
        YOLO(YOLOV5)  # YOLOv5 import (weights/yolov5.py) reads it; before it landed the table named the family
    except WeightsError:
        _assert_family_error(YOLOV5, "YOLOv5")
    assert main(["inspect", str(YOLOV5)]) == 0
    out = capsys.readouterr().out
    assert "REFUSED" not in out and "must not be loaded" not in out and "UNSAFE" not in out


@pytest.mark.parametrize(("kind", "words"), [
    ("yolov5-seg", "YOLOv5"), ("yolov7", "this is a YOLOv7 checkpoint"),
    ("yolox", "this is a YOLOX checkpoint"), ("segment26", "reference (Ultralytics) segmentation checkpoint"),
    ("pose", "reference (Ultralytics) pose checkpoint"), ("obb", "reference (Ultralytics) oriented-box (OBB)"),
])
def test_foreign_and_other_task_checkpoints_are_named(kind, words, tmp_path):
    h = _foreign_helpers()
    if kind in ("yolov5-seg", "yolov7", "yolox"):
        module, name, extra = {"yolov5-seg": ("models.yolo", "SegmentationModel", ("models.yolo", "Segment")),
                               "yolov7": ("models.yolo", "Model", ("models.common", "SPPCSPC")),
                               "yolox": ("yolox.models.yolox", "YOLOX", ("yolox.models.yolo_pafpn", "YOLOPAFPN"))}[kind]
        child = h.module(*extra)
        obj = {"model": h.module(module, name, children={"0": child}), "epoch": 3}
    else:
        obj = h.mini_checkpoint()
        model_class = {"segment26": "SegmentationModel", "pose": "PoseModel", "obb": "OBBModel"}[kind]
        obj["model"].cls = h.Fake("ultralytics.nn.tasks", model_class)
        if kind == "segment26":  # a head newer than the allow-list: still named by its task, not "unsafe"
            obj["model"].state["_modules"]["head"] = h.module("ultralytics.nn.modules.head", "Segment26")
    path = h.fake_torch_save(obj, tmp_path / f"{kind}.pt")
    _assert_family_error(path, words)
    from yolokit.weights.inspect import format_inspect, inspect_weights

    report = inspect_weights(path)
    assert words in (report["error"] or ""), report
    assert "must not be loaded" not in format_inspect(report)


def test_a_family_name_does_not_hide_a_dangerous_global(tmp_path):
    import os

    from yolokit.errors import UnsafeWeightsError

    h = _foreign_helpers()
    marker = tmp_path / "MARKER"
    obj = {"model": h.module("models.yolo", "Model"), "hook": h.Call(os.system, (f"touch {marker}",))}
    path = h.fake_torch_save(obj, tmp_path / "mixed.pt")
    with pytest.raises(UnsafeWeightsError, match="system"):
        YOLO(path)
    assert not marker.exists()
    from yolokit.weights.inspect import inspect_weights

    assert inspect_weights(path)["safety"]["verdict"] == "unsafe"


# --- item 8: the reference's attribute names ----------------------------------------------------------------------
def test_metrics_have_the_reference_names(tiny_data):
    metrics = YOLO(SHAPES).val(data=str(tiny_data), engine="eager", imgsz=64, plots=False, verbose=False,
                               project=str(tiny_data.parent), name="v")
    box = metrics.box
    assert (box.map, box.map50, box.map75, box.mp, box.mr) == (metrics.map, metrics.map50, metrics.map75,
                                                               metrics.precision, metrics.recall)
    rows = [row for row in metrics.per_class if row["instances"] > 0]
    assert box.ap_class_index.tolist() == [row["class"] for row in rows]
    assert box.ap.tolist() == pytest.approx([max(row["map"], 0.0) for row in rows])
    maps = metrics.maps
    pairs = zip(box.ap_class_index, box.ap, strict=True)
    assert maps.shape == (3,) and all(maps[c] == pytest.approx(a) for c, a in pairs)
    for c in set(range(3)) - set(box.ap_class_index.tolist()):
        assert maps[c] == pytest.approx(metrics.map)  # a class without ground truth holds the overall mAP
    assert metrics.results_dict == {"metrics/precision(B)": box.mp, "metrics/recall(B)": box.mr,
                                    "metrics/mAP50(B)": box.map50, "metrics/mAP50-95(B)": box.map,
                                    "fitness": metrics.fitness}
    assert metrics.mean_results() == [box.mp, box.mr, box.map50, box.map]
    assert metrics.save_dir == tiny_data.parent / "v" and (metrics.save_dir / "metrics.json").is_file()


def test_results_have_the_reference_names(tmp_path, monkeypatch):
    import builtins

    import numpy as np

    from yolokit.errors import YolokitError
    from yolokit.predict.results import Results

    image = np.zeros((100, 200, 3), np.uint8)
    r = Results(image, "x.jpg", {0: "cat", 1: "dog"}, boxes=np.array([[10, 20, 50, 60, 0.9, 1], [0, 0, 5, 5, 0.5, 0]],
                                                                   dtype=np.float32))
    assert (r.masks, r.keypoints, r.obb, r.probs) == (None, None, None, None)
    text = r.to_csv(tmp_path / "b.csv")
    assert text.splitlines() == ["name,class,confidence,x1,y1,x2,y2", "dog,1,0.9,10.0,20.0,50.0,60.0",
                                 "cat,0,0.5,0.0,0.0,5.0,5.0"]
    assert (tmp_path / "b.csv").read_text() == text
    real_import = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas":
            raise ImportError("No module named 'pandas'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(YolokitError, match="pip install pandas") as info:
        r.to_df()
    assert "\n" not in str(info.value)


def test_model_to_moves_and_sets_the_default_device():
    import torch

    model = YOLO(SHAPES)
    assert model.to("cpu") is model and model.device == torch.device("cpu")
    assert len(model.predict(FIXTURES / "images" / "00000.jpg", engine="eager", verbose=False)) == 1


# --- item 9: numbers a user compares --------------------------------------------------------------------------------
@pytest.mark.parametrize(("spec", "nc", "imgsz", "fused", "reference"), [
    ("yolo26n.yaml", None, 640, False, 6.2396672), ("yolo26n.yaml", 3, 640, False, 5.8964992),
    ("yolo11n.yaml", None, 640, False, 6.6733184), ("yolo11n.yaml", None, 320, False, 1.6568096),
    ("yolov8n.yaml", None, 640, False, 8.8550912), ("yolov8n.yaml", None, 640, True, 8.7439872),
])
def test_gflops_equal_the_reference_count(spec, nc, imgsz, fused, reference):
    """The reference 8.4.190's get_flops (thop) on the same architectures, measured side by side."""
    from yolokit.models.info import count_gflops

    model = YOLO(spec, num_classes=nc).model
    if fused:
        model.fuse()
    assert count_gflops(model, imgsz) == pytest.approx(reference, rel=1e-9)


def test_sizes_are_megabytes_of_a_million_bytes():
    from yolokit.utils.io import format_size

    assert format_size(9_612_345) == "9.61 MB" and format_size(3_200) == "3.2 kB" and format_size(10_000) == "0.01 MB"


def test_inspect_of_an_onnx_file_shows_its_date_and_spec_as_rows(tmp_path, capsys):
    import datetime

    from yolokit.cli import main

    path = YOLO(SHAPES).export(format="onnx", imgsz=64, file=str(tmp_path / "m.onnx"))
    assert main(["inspect", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    created = next(line for line in lines if line.startswith("Created     "))
    stamp = created.split()[1]
    age = datetime.datetime.now(datetime.timezone.utc) - datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert age.total_seconds() < 3600 and created.endswith("by yolokit " + __import__("yolokit").__version__)
    assert any(line.startswith("Model       YOLO26") for line in lines)
    assert "Classes     3: 0 rectangle, 1 ellipse, 2 triangle" in lines
    spec = lines.index(next(line for line in lines if line.startswith("Spec        ")))
    assert lines[spec + 1].split()[:2] == ["0", "backbone"] and lines[-1].split()[:2] == ["23", "head"]
    assert not any(len(line) > 200 for line in lines)  # no one-line dumps


# --- item 10: threads adapted to the cores other processes leave free ---------------------------------------------
@pytest.mark.parametrize(("busy", "expected"), [(0.0, (2, True)), (0.2, (2, True)), (0.4, (2, False)),
                                                (1.0, (1, False)), (2.0, (1, False))])
def test_session_threads_follow_the_free_cores(busy, expected, monkeypatch):
    import yolokit.utils.threads as threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "physical_cores", lambda: 2)
    monkeypatch.setattr(threads, "_threads_per_core", lambda: 1)
    monkeypatch.setattr(threads, "busy_cpus", lambda probe_s=0.05: busy)
    plan = threads.session_threads()
    assert (plan.count, plan.spin) == expected
    assert threads.session_threads(3) == threads.ThreadPlan(3, True)  # an explicit count is the user's
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert threads.session_threads() == threads.ThreadPlan(4, True)


def test_busy_cpus_sees_a_busy_loop():
    import subprocess
    import sys

    from yolokit.utils.threads import busy_cpus

    if not Path("/proc/stat").is_file():
        pytest.skip("needs /proc/stat")
    hog = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 5\nwhile time.time() < end: pass"])
    try:
        import time

        time.sleep(0.3)
        assert busy_cpus(0.2) >= 0.7  # at least the hog's core (more when the machine is busy anyway)
    finally:
        hog.kill()
        hog.wait()


def test_onnxruntime_sessions_stop_spinning_on_a_busy_machine(monkeypatch):
    pytest.importorskip("onnxruntime")
    import yolokit.utils.threads as threads
    from yolokit.backends.onnxruntime_backend import OnnxRuntimeBackend
    from yolokit.weights import load_weights

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "busy_cpus", lambda probe_s=0.05: float(threads.physical_cores()))
    backend = OnnxRuntimeBackend.from_model(load_weights(SHAPES))
    options = backend.session.get_session_options()
    assert options.intra_op_num_threads == 1 and backend.num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


@pytest.mark.slow
def test_under_load_benchmark_runs_both_phases(tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "under_load.json"
    command = [sys.executable, str(FIXTURES.parents[1] / "benchmarks" / "under_load.py"), "--no-reference",
               "--weights", str(SHAPES), "--image", str(FIXTURES / "images" / "00000.jpg"), "--imgsz", "64",
               "--pairs", "2", "--runs", "1", "--hogs", "1", "--max-seconds", "60", "--variant",
               "threads1:OMP_NUM_THREADS=1", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert [row["side"] for row in result["rows"]] == ["yolokit", "yolokit-threads1"]
    assert all(len(result["raw_ms"][phase][side]) == 2 for phase in ("idle", "loaded") for side in
               ("yolokit", "yolokit-threads1"))
    assert "loaded/idle" in done.stdout


@pytest.mark.parametrize("argv", [["inspect", "help"], ["inspect", "--help"], ["convert", "-h"],
                                  ["benchmark", "--help"], ["demo", "help"]])
def test_every_mode_has_help(argv, capsys):
    from yolokit.cli import main

    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith((f"usage: yolokit {argv[0]}", f"yolokit {argv[0]}: ")) and len(out.splitlines()) >= 1


def test_input_scaling_is_single_threaded_numpy_and_bit_identical_to_torch():
    import numpy as np
    import torch

    from yolokit.data.transforms import bgr_to_rgb_chw, to_input_tensor

    every_value = np.repeat(np.arange(256, dtype=np.uint8), 3).reshape(16, 16, 3)
    ours = to_input_tensor([every_value, every_value[::-1].copy()])
    assert ours.dtype == torch.float32 and ours.shape == (2, 3, 16, 16)
    assert torch.equal(ours, torch.from_numpy(bgr_to_rgb_chw([every_value, every_value[::-1].copy()])).float() / 255)
