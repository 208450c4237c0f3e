"""YOLO.export / `yolokit export`, and YOLO("x.onnx"): an exported model predicts and validates like its source."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from yolokit.cli import main
from yolokit.errors import ConfigError
from yolokit.model import YOLO
from yolokit.weights import detect_format, read_weights

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
IMAGES = sorted(str(p) for p in (FIXTURES / "images").glob("*.jpg"))


@pytest.fixture
def yolo26(tmp_path) -> Path:
    path = tmp_path / "yolo26-tiny-shapes.pt"
    shutil.copy(FIXTURES / "yolo26-tiny-shapes.pt", path)
    return path


def rows(results) -> list[np.ndarray]:
    return [np.asarray(r.boxes.data) for r in results]


@pytest.mark.parametrize("nms", [True, False])
def test_onnx_file_predicts_like_the_weights_it_came_from(yolo26, nms):
    source = YOLO(yolo26)
    path = source.export(format="onnx", imgsz=320, nms=nms)
    assert path == yolo26.with_suffix(".onnx") and detect_format(path) == "onnx"
    onnx_model = YOLO(path)
    assert onnx_model.model is None and onnx_model.names == source.names and onnx_model.task == "detect"
    assert repr(onnx_model) == repr(source).replace(str(yolo26), str(path))  # name from the file's spec
    args = {"imgsz": 320, "conf": 0.05, "verbose": False}
    expected = source.predict(IMAGES, nms=nms, engine="channels_last", **args)
    got = onnx_model.predict(IMAGES, **args)  # no nms= given: the head the file holds
    assert sum(len(r) for r in expected) > 4
    for e, g in zip(rows(expected), rows(got), strict=True):
        assert e.shape == g.shape
        np.testing.assert_array_equal(g[:, 5], e[:, 5])
        np.testing.assert_allclose(g[:, :4], e[:, :4], rtol=0, atol=1e-3)
        np.testing.assert_allclose(g[:, 4], e[:, 4], rtol=0, atol=1e-5)
    with pytest.raises(ConfigError, match=f"only the .* head, got nms={not nms}: pass nms={nms}"):
        onnx_model.predict(IMAGES[0], nms=not nms, **args)


def test_onnx_file_validates_like_the_weights(yolo26, tmp_path):
    from yolokit.data.synth import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "synth", n_train=1, n_val=4, imgsz=320)
    source = YOLO(yolo26)
    onnx_model = YOLO(source.export(imgsz=320))
    args = {"imgsz": 320, "batch": 2, "plots": False, "save_json": False, "verbose": False,
            "project": str(tmp_path / "runs")}
    expected = source.val(data, engine="channels_last", **args)
    got = onnx_model.val(data, **args)
    assert expected.map50 > 0.05
    for key in ("map", "map50", "precision", "recall"):
        assert abs(getattr(got, key) - getattr(expected, key)) <= 1e-6, key


def test_onnx_model_refuses_torch_only_modes_in_one_line(yolo26):
    onnx_model = YOLO(YOLO(yolo26).export(imgsz=64))
    for call, mode in ((onnx_model.info, "info"), (onnx_model.fuse, "fuse"), (onnx_model.export, "export"),
                       (lambda: onnx_model.save("x.safetensors"), "save")):
        with pytest.raises(ConfigError, match=f"^{mode} needs PyTorch weights, but .*is an ONNX model") as info:
            call()
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="engine='jit' needs PyTorch weights"):
        onnx_model.predict(IMAGES[0], engine="jit", verbose=False)
    with pytest.raises(ConfigError, match="runs on the CPU"):
        onnx_model.predict(IMAGES[0], device="cuda", verbose=False)
    with pytest.raises(ConfigError, match="half=True needs PyTorch weights"):
        onnx_model.predict(IMAGES[0], half=True, verbose=False)


def test_export_weights_formats_and_errors(yolo26, tmp_path):
    model = YOLO(yolo26)
    safetensors = model.export(format="safetensors", half=True)
    assert safetensors == yolo26.with_suffix(".safetensors") and detect_format(safetensors) == "safetensors"
    stored = read_weights(safetensors).state_dict
    assert {t.dtype for t in stored.values() if t.is_floating_point()} == {torch.float16}  # half=True honoured
    assert YOLO(safetensors).names == model.names
    with pytest.raises(ConfigError, match="would overwrite the weights it reads"):
        model.export(format="pt")
    native = model.export(format="pt", file=str(tmp_path / "native.pt"))
    assert detect_format(native) == "yolokit-pt"
    with pytest.raises(ConfigError, match="format must be one of onnx, torchscript, safetensors, pt, got 'tflite'"):
        model.export(format="tflite")
    with pytest.raises(ConfigError, match="int8=True needs data=path/to/data.yaml"):
        model.export(int8=True)
    with pytest.raises(ConfigError, match="unknown export setting 'imsz': did you mean 'imgsz'"):
        model.export(imsz=320)


def test_spec_models_export_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = YOLO("yolov8n.yaml").export(imgsz=64)
    assert path.resolve() == (tmp_path / "yolov8n.onnx").resolve() and path.stat().st_size > 1_000_000


def test_cli_export_then_predict(yolo26, capsys, tmp_path):
    assert main(["export", f"model={yolo26}", "imgsz=320", f"file={tmp_path / 'e2e.onnx'}", "nms=False"]) == 0
    assert f"-> {tmp_path / 'e2e.onnx'}" in capsys.readouterr().out
    assert main(["predict", f"model={tmp_path / 'e2e.onnx'}", f"source={IMAGES[0]}", "imgsz=320",
                 f"project={tmp_path / 'runs'}"]) == 0
    assert (tmp_path / "runs" / "predict" / Path(IMAGES[0]).name).is_file()
    assert main(["export", f"model={yolo26}", "format=tflite"]) == 2
    assert "format must be one of" in capsys.readouterr().err


def test_downloaded_weights_export_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLOKIT_CACHE_DIR", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "weights" / "yolo26-tiny-shapes.pt"
    cached.parent.mkdir(parents=True)
    shutil.copy(FIXTURES / "yolo26-tiny-shapes.pt", cached)
    monkeypatch.chdir(tmp_path)
    path = YOLO(cached).export(imgsz=64)
    assert path.resolve() == (tmp_path / "yolo26-tiny-shapes.onnx").resolve()
    assert not cached.with_suffix(".onnx").exists()  # nothing written into the download cache
