"""Public weights API: detect_format by content, load_weights(path), save_weights and its metadata."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import randomise_batchnorm
from yolokit.errors import WeightsError
from yolokit.weights import detect_format, load_weights, native, read_weights, save_weights, transfer_weights

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _model(num_classes: int = 3, seed: int = 0) -> torch.nn.Module:
    from yolokit.models.builder import build_model
    from yolokit.models.spec import load_spec

    torch.manual_seed(seed)
    model = build_model(load_spec(FIXTURES / "yolo11-tiny.yaml"), num_classes=num_classes)
    randomise_batchnorm(model, seed)  # non-trivial BN statistics so that eval outputs depend on every buffer
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.num_batches_tracked.fill_(3)
    model.names = {i: f"name{i}" for i in range(num_classes)}
    return model.eval()


def _onnx_file(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    model = helper.make_model(graph, producer_name="pytorch", opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())
    onnx.checker.check_model(str(path))
    return path


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("saved")
    model = _model()
    return {
        "safetensors": save_weights(model, root / "m.safetensors"),
        "yolokit-pt": save_weights(model, root / "m.pt"),
        "onnx": _onnx_file(root / "m.onnx"),
    }


@pytest.mark.parametrize("fmt", ["safetensors", "yolokit-pt", "onnx"])
@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".onnx", ".bin", ""])
def test_detect_format_ignores_the_file_name(saved: dict, tmp_path: Path, fmt: str, suffix: str) -> None:
    misnamed = tmp_path / f"weights{suffix}"
    shutil.copy(saved[fmt], misnamed)
    assert detect_format(misnamed) == fmt


@pytest.mark.parametrize("fmt", ["safetensors", "yolokit-pt"])
def test_load_weights_rebuilds_an_identical_model(saved: dict, tmp_path: Path, fmt: str) -> None:
    reference = _model()
    misnamed = tmp_path / ("m.pt" if fmt == "safetensors" else "m.safetensors")  # the wrong suffix on purpose
    shutil.copy(saved[fmt], misnamed)
    loaded = load_weights(misnamed)
    assert not loaded.training
    assert loaded.names == {0: "name0", 1: "name1", 2: "name2"}
    assert loaded.metadata["names"] == loaded.names and loaded.metadata["stride"] == [8, 16, 32]
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(x), reference(x))
    loaded_state = loaded.state_dict()
    for key, value in reference.state_dict().items():
        assert torch.equal(loaded_state[key], value), key


def test_load_weights_from_fp16_file_equals_the_rounded_model(tmp_path: Path) -> None:
    model = _model()
    path = save_weights(model, tmp_path / "half.safetensors", half=True)
    assert read_weights(path).state_dict["model.0.conv.weight"].dtype == torch.float16
    loaded = load_weights(path)
    assert loaded.model[0].conv.weight.dtype == torch.float32
    rounded = {k: v.half().float() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    model.load_state_dict(rounded)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_onnx_is_detected_but_not_loaded_here(saved: dict) -> None:
    with pytest.raises(WeightsError, match=r"is an ONNX model: .*predict or validate with YOLO\(path\)"):
        load_weights(saved["onnx"])
    with pytest.raises(WeightsError, match="m.onnx"):
        read_weights(saved["onnx"])


def test_tensors_that_do_not_fit_the_spec_are_named(saved: dict, tmp_path: Path) -> None:
    wf = read_weights(saved["safetensors"])
    meta = dict(wf.metadata, names={i: str(i) for i in range(5)})  # claims 5 classes, tensors are for 3
    path = native.write_safetensors(tmp_path / "lying.safetensors", wf.state_dict, meta)
    with pytest.raises(WeightsError) as info:
        load_weights(path)
    message = str(info.value)
    assert message.startswith(f"{path}: tensors do not fit the model: 6 with a different shape")
    assert "model.23.cv3.0.2.weight expected (5, 16, 1, 1) found (3, 16, 1, 1)" in message
    assert "0 missing" in message and "0 unexpected" in message


def test_metadata_schema_of_a_saved_file(saved: dict) -> None:
    import yolokit

    data = saved["safetensors"].read_bytes()
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    meta = {k: json.loads(v) for k, v in header["__metadata__"].items()}
    assert meta["yolokit_format"] == 1 and meta["format_version"] == 1 and meta["task"] == "detect"
    assert meta["names"] == {"0": "name0", "1": "name1", "2": "name2"}
    assert meta["stride"] == [8, 16, 32] and meta["imgsz"] == 640
    assert meta["spec"]["backbone"][0] == [-1, 1, "Conv", [64, 3, 2]]
    assert meta["yolokit_version"] == yolokit.__version__
    assert meta["created"].endswith("Z") and meta["created"][:2] == "20"
    assert meta["parent_sha256"] is None and meta["provenance"] == {}


def test_save_carries_lineage_and_merges_given_metadata(tmp_path: Path) -> None:
    model = _model()
    model.metadata = {"provenance": {"source": "ultralytics", "date": "2024"}, "parent_sha256": "a" * 64, "imgsz": 320}
    path = save_weights(model, tmp_path / "m.pt", metadata={"provenance": {"metrics": {"mAP50": 0.5}}, "note": "x"})
    meta = load_weights(path).metadata
    assert meta["provenance"] == {"source": "ultralytics", "date": "2024", "metrics": {"mAP50": 0.5}}
    assert meta["parent_sha256"] == "a" * 64 and meta["imgsz"] == 320 and meta["note"] == "x"
    stale = {"names": {0: "stale"}, "created": "1999-01-01T00:00:00Z"}
    meta = read_weights(save_weights(model, tmp_path / "n.safetensors", metadata=stale)).metadata
    assert meta["names"] == model.names and meta["created"] != stale["created"]  # the model's own facts win


def test_save_rejects_unknown_suffix_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"unknown suffix '\.pth'; use \.safetensors \(recommended\) or \.pt"):
        save_weights(_model(), tmp_path / "m.pth")
    assert list(tmp_path.iterdir()) == []


def test_only_the_main_process_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    path = save_weights(_model(), tmp_path / "m.safetensors")
    assert path == tmp_path / "m.safetensors" and not path.exists()


def test_load_weights_argument_errors(saved: dict) -> None:
    with pytest.raises(WeightsError, match="expects a file path.*use transfer_weights"):
        load_weights(_model())
    with pytest.raises(WeightsError, match="expects a torch model first"):
        transfer_weights(saved["safetensors"], saved["yolokit-pt"])


def test_plain_torch_pickle_is_not_a_yolokit_file(tmp_path: Path) -> None:
    path = tmp_path / "bare.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(WeightsError, match=r"bare\.pt: unrecognised weights file \(a plain torch pickle"):
        detect_format(path)


def test_importing_yolokit_does_not_import_torch() -> None:
    code = "import sys, yolokit, yolokit.weights; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


class _Remover:
    """Pickles as a call to os.remove(path): loading it unsafely would delete the canary file."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        import os

        return (os.remove, (self.path,))


def test_malicious_torch_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    from yolokit.errors import UnsafeWeightsError

    canary = tmp_path / "canary.txt"
    canary.write_text("still here")
    path = tmp_path / "evil.safetensors"  # misleading name as well
    torch.save({"yolokit_format": 1, "payload": _Remover(canary)}, path)
    with pytest.raises(UnsafeWeightsError, match=r"evil\.safetensors: torch pickle references posix\.remove"):
        detect_format(path)
    with pytest.raises(UnsafeWeightsError):
        load_weights(path)
    assert canary.read_text() == "still here"


def test_bytes_that_only_start_like_onnx_are_unrecognised(tmp_path: Path) -> None:
    path = tmp_path / "fake.onnx"
    path.write_bytes(b"\x08\x07" + b"\xff" * 40)  # ir_version field, then a broken tag
    with pytest.raises(WeightsError, match=r"fake\.onnx: unrecognised weights file \(first bytes 08 07 ff"):
        detect_format(path)


def test_native_pt_with_a_broken_payload_is_named(tmp_path: Path) -> None:
    path = tmp_path / "broken.pt"
    torch.save({"yolokit_format": 1, "metadata": {}, "state_dict": {"w": [1, 2]}}, path)
    with pytest.raises(WeightsError, match=r"broken\.pt: 'state_dict' must map names to tensors"):
        read_weights(path)
