"""inspect_weights / format_inspect on every format, including unsafe files (inspectable, never unpickled)."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib

import pytest
import torch
from foreign_helpers import FIXTURES, Call, Fake, Obj, fake_torch_save, mini_checkpoint

from yolokit.errors import WeightsError
from yolokit.models.builder import build_model
from yolokit.weights.inspect import architecture, format_inspect, inspect_weights


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    from yolokit.weights import convert_weights

    folder = tmp_path_factory.mktemp("converted")
    src = FIXTURES / "yolo26-tiny-shapes.pt"
    return {
        "safetensors": convert_weights(src, folder / "y26.safetensors", half=True),
        "pt": convert_weights(src, folder / "y26.pt"),
    }


def test_reference_checkpoint_report() -> None:
    path = FIXTURES / "yolo26-tiny-shapes.pt"
    report = inspect_weights(path)
    assert report["format"] == "ultralytics-pt" and report["task"] == "detect"
    assert report["file_size"] == path.stat().st_size
    assert report["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    safety = report["safety"]
    assert safety["verdict"] == "safe" and "restricted unpickler" in safety["detail"]
    assert {"global": "ultralytics.nn.tasks.DetectionModel", "pickled_as": "ultralytics.nn.tasks.DetectionModel",
            "allowed": True} in safety["globals"]  # fmt: skip
    assert {"global": "builtins.set", "pickled_as": "__builtin__.set", "allowed": True} in safety["globals"]
    assert report["architecture"] == {"name": "YOLO26n", "family": "yolo26", "scale": "n", "layers": 24}
    assert report["nc"] == 3 and report["names"] == {"0": "rectangle", "1": "ellipse", "2": "triangle"}
    assert report["tensors"] == 708 and report["dtypes"] == {"float16": 594, "int64": 114}
    model = build_model(inspect_spec(path))
    assert report["parameters"] == sum(p.numel() for p in model.parameters())
    assert report["imgsz"] == 320 and report["stride"] == [8, 16, 32]
    created = report["created"]
    assert created["reference_version"] == "8.4.190" and created["source"] == "ultralytics" and created["epoch"] == -1
    assert "created" not in created  # the import time is not the file's creation time
    assert report["error"] is None
    json.dumps(report)


def inspect_spec(path: pathlib.Path) -> dict:
    from yolokit.weights.foreign import read_ultralytics

    return read_ultralytics(path)[1]["spec"]


def test_format_inspect_text() -> None:
    report = inspect_weights(FIXTURES / "yolov8-tiny-shapes.pt")
    text = format_inspect(report)
    assert "Format      ultralytics-pt" in text
    assert "Model       YOLOv8n (family yolov8, scale n, 23 layers), task detect" in text
    assert "Classes     3: 0 rectangle, 1 ellipse, 2 triangle" in text
    assert f"Parameters  {report['parameters']:,} (355 tensors; float16: 298, int64: 57)" in text
    assert "REFUSED" not in text and "allowed  ultralytics.nn.tasks.DetectionModel" not in text
    verbose = format_inspect(report, show_globals=True)
    assert "allowed  ultralytics.nn.tasks.DetectionModel" in verbose
    assert "allowed  builtins.set  (pickled as __builtin__.set)" in verbose


def test_safetensors_report(converted: dict[str, pathlib.Path]) -> None:
    report = inspect_weights(converted["safetensors"])
    assert report["format"] == "safetensors"
    assert report["safety"] == {"verdict": "safe", "globals": [],
                                "detail": "safetensors: raw tensors and a JSON header, no pickle code"}  # fmt: skip
    assert report["dtypes"] == {"float16": 594, "int64": 114} and report["architecture"]["name"] == "YOLO26n"
    source_sha = hashlib.sha256((FIXTURES / "yolo26-tiny-shapes.pt").read_bytes()).hexdigest()
    assert report["created"]["parent_sha256"] == source_sha
    assert report["created"]["source_format"] == "ultralytics-pt" and report["created"]["yolokit_version"]
    assert "Created     " in format_inspect(report)


def test_native_pt_report(converted: dict[str, pathlib.Path]) -> None:
    report = inspect_weights(converted["pt"])
    assert report["format"] == "yolokit-pt" and report["safety"]["verdict"] == "safe"
    assert "restricted unpickler" in report["safety"]["detail"]  # native .pt: never torch.load (_native_read)
    assert report["safety"]["globals"] and all(g["allowed"] for g in report["safety"]["globals"])
    assert report["dtypes"] == {"float32": 594, "int64": 114} and report["nc"] == 3


@pytest.mark.parametrize("wrapped", [True, False])
def test_unsafe_file_is_inspectable_and_not_executed(tmp_path: pathlib.Path, wrapped: bool) -> None:
    marker = tmp_path / "MARKER"
    payload = Call(os.system, (f"touch {marker}",))
    obj = mini_checkpoint(train_args={"x": payload}) if wrapped else [payload]
    report = inspect_weights(fake_torch_save(obj, tmp_path / "evil.pt"))
    assert report["format"] == ("ultralytics-pt" if wrapped else "torch-pickle")
    assert report["safety"]["verdict"] == "unsafe" and "posix.system" in report["safety"]["detail"]
    assert [g["global"] for g in report["safety"]["globals"] if not g["allowed"]] == ["posix.system"]
    assert report["parameters"] is None and report["names"] is None
    assert "REFUSED  posix.system" in format_inspect(report)
    assert not marker.exists()


def test_yolov5_file_with_layers_yolokit_lacks_is_reported(tmp_path: pathlib.Path) -> None:
    obj = {"model": Obj(Fake("models.yolo", "Model"), {"_modules": {"0": Obj(Fake("models.common", "C3TR"), {})}})}
    report = inspect_weights(fake_torch_save(obj, tmp_path / "v5.pt"))
    assert report["safety"]["verdict"] == "unsupported" and "these layers are not supported" in report["error"]
    assert "models.common.C3TR" in report["error"]


def test_unreadable_contents_are_reported_not_raised(tmp_path: pathlib.Path) -> None:
    args = Obj(Fake("ultralytics.utils", "IterableSimpleNamespace"), {"imgsz": 320})
    report = inspect_weights(fake_torch_save({"date": "2025", "model": None, "args": args}, tmp_path / "empty.pt"))
    assert report["format"] == "ultralytics-pt" and report["safety"]["verdict"] == "safe"
    assert "no 'model' or 'ema' entry" in report["error"] and report["parameters"] is None
    assert "Note        " in format_inspect(report)


def test_plain_state_dict_pickle(tmp_path: pathlib.Path) -> None:
    state = {"a.weight": torch.zeros(3, 4), "a.bias": torch.zeros(3, dtype=torch.float16)}
    state["bn.running_var"] = torch.ones(3)
    path = tmp_path / "plain.pt"
    torch.save(state, path)
    report = inspect_weights(path)
    assert report["format"] == "torch-pickle" and report["safety"]["verdict"] == "safe"
    assert report["tensors"] == 3 and report["parameters"] == 15 and report["dtypes"] == {"float16": 1, "float32": 2}
    assert "plain torch state_dict" in report["error"] and report["architecture"] is None


def test_not_a_weights_file_raises(tmp_path: pathlib.Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes((FIXTURES / "yolov8-tiny-random.pt").read_bytes()[:5000])
    for path in (text, truncated, tmp_path / "absent.pt"):
        with pytest.raises(WeightsError):
            inspect_weights(path)


def test_onnx_report(tmp_path: pathlib.Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [2, 3], [0.0] * 6)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [weight])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="test")
    helper.set_model_props(model, {"names": '{"0": "a"}'})
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    report = inspect_weights(path)
    assert report["format"] == "onnx" and report["safety"]["verdict"] == "safe"
    assert report["tensors"] == 1 and report["parameters"] == 6 and report["dtypes"] == {"float32": 1}
    assert report["created"]["opset"] == 17 and report["created"]["names"] == '{"0": "a"}'


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"yaml_file": "yolo11s.yaml", "scale": "s", "backbone": [[-1, 1, "Conv", [64]]], "head": []},
         {"name": "YOLO11s", "family": "yolo11", "scale": "s", "layers": 1}),
        ({"scales": {"m": [0.5, 1.0, 512]}, "end2end": True}, {"name": "YOLO26m", "family": "yolo26", "scale": "m",
                                                               "layers": 0}),
        ({"backbone": [[-1, 1, "C2f", [64]]], "scales": {"n": [], "s": []}},
         {"name": "YOLOv8", "family": "yolov8", "scale": None, "layers": 1}),
        ({}, {"name": "unknown", "family": "unknown", "scale": None, "layers": 0}),
    ],
)  # fmt: skip
def test_architecture_from_spec(spec: dict, expected: dict) -> None:
    assert architecture(spec) == expected
