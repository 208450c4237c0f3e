"""Class 3: every failure on hostile or broken input is one line (a ``YolokitError``), never a traceback."""

import json
import logging

import pytest
from hostile_files import nested_json_safetensors, unpickled_huge_int_checkpoint
from hostile_server import bad_status, hostile_server, long_header, many_headers
from security_helpers import ROOT, png_header

from yolokit.errors import DatasetError, ExportError, SourceError, SpecError, WeightsError, YolokitError

FIXTURE = ROOT / "tests" / "fixtures" / "yolo26-tiny-shapes.pt"


def _one_line(error: BaseException) -> None:
    text = str(error)
    assert isinstance(error, YolokitError) and text.strip() and "\n" not in text, repr(error)


@pytest.mark.parametrize("behaviour", [bad_status, many_headers, long_header], ids=lambda b: b.__name__)
def test_http_protocol_errors_are_one_line(behaviour, tmp_path):
    from yolokit.data.url import fetch_url
    from yolokit.weights.download import download_weights

    with hostile_server(behaviour) as base:
        with pytest.raises(WeightsError) as weights_error:
            download_weights(f"{base}/w.pt", dest=tmp_path / "w.pt", timeout=5, progress=False)
        with pytest.raises(SourceError) as source_error:
            fetch_url(f"{base}/a.jpg", timeout=5)
    for error in (weights_error.value, source_error.value):
        _one_line(error)
    assert not list(tmp_path.iterdir())


def test_unreadable_weights_file_is_one_line(tmp_path, monkeypatch):
    from yolokit.weights import formats
    from yolokit.weights.read import read_weights

    path = tmp_path / "w.pt"
    path.write_bytes(FIXTURE.read_bytes())

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(formats, "open", denied, raising=False)  # the suite may run as root: simulate chmod 000
    with pytest.raises(WeightsError, match="Permission denied") as error:
        read_weights(path)
    _one_line(error.value)


@pytest.mark.parametrize("in_metadata", [False, True], ids=["header", "metadata"])
def test_deeply_nested_safetensors_json_is_one_line(tmp_path, in_metadata):
    from yolokit.weights.read import read_weights

    path = nested_json_safetensors(tmp_path / "deep.safetensors", 100_000, in_metadata)
    with pytest.raises(WeightsError, match="nest") as error:
        read_weights(path)
    _one_line(error.value)


def test_decompression_bomb_in_a_label_scan_is_reported_not_raised(tmp_path, caplog):
    from yolokit.data.labels import scan_labels

    (tmp_path / "images").mkdir()
    bomb = tmp_path / "images" / "bomb.png"
    bomb.write_bytes(png_header(50000, 50000))  # over Pillow's own 2x limit: DecompressionBombError on open
    labels, report = scan_labels([bomb], nc=1, progress=False)
    assert labels == [] and report.corrupt == 1 and "decompression bomb" in report.messages[0]


@pytest.mark.parametrize(("row", "match"), [
    ([-1, 1, "Conv", [16, 0, 2]], "kernel 0"),
    ([-1, 1, "Conv", [16, 3, 0]], "stride 0"),
    ([[-1, 0], 1, "Concat", [5]], "dimension 5"),
    ([-1, 1, "SPPF", [16, 4]], "odd"),
    ([-1, 1, "C2f", [16, True, 1, 1000.0]], "out of range"),
])  # fmt: skip
def test_hostile_spec_values_are_one_line(row, match):
    from yolokit.models import build_model

    spec = {"nc": 1, "backbone": [[-1, 1, "Conv", [16, 3, 2]], row], "head": [[-1, 1, "Detect", [1]]]}
    with pytest.raises(SpecError, match=match) as error:
        build_model(spec)
    _one_line(error.value)


def test_unwritable_output_folder_is_one_line(tmp_path, capsys):
    from yolokit.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    image = tmp_path / "a.png"
    image.write_bytes(png_header(32, 32))
    code = main(["predict", f"model={FIXTURE}", f"source={image}", f"project={blocker}", "imgsz=64"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot write the output folder" in err[0], err


def test_huge_ints_in_inspect_json(tmp_path, capsys):
    from yolokit.cli import main

    path = unpickled_huge_int_checkpoint(tmp_path / "big.pt")
    assert main(["inspect", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["error"] is None and report["format"] == "ultralytics-pt"
    from yolokit.weights.read import read_weights

    train_args = read_weights(path).metadata["provenance"]["train_args"]
    assert train_args == {"imgsz": 320, "seed": "<int of 100001 bits>"}


def test_nan_weights_warn_naming_the_tensor(tmp_path, caplog):
    import torch
    from safetensors.torch import save_file

    from yolokit.weights.read import read_weights

    path = tmp_path / "nan.safetensors"
    save_file({"a": torch.ones(2), "b.weight": torch.tensor([1.0, float("nan")]),
               "c": torch.tensor([float("inf")]).half()}, str(path))  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="yolokit.weights.read"):
        read_weights(path)
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "2 tensor(s) hold NaN or inf" in message and "b.weight" in message and "c" in message


# --- ONNX metadata ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def onnx_bytes():
    pytest.importorskip("onnxruntime")
    from yolokit.export.onnx import export_onnx
    from yolokit.weights import load_weights

    return export_onnx(load_weights(FIXTURE), imgsz=64)


def _with_metadata(data: bytes, **values) -> bytes:
    import onnx

    proto = onnx.load_from_string(data)
    props = {p.key: p.value for p in proto.metadata_props}
    props.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()})
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


@pytest.mark.parametrize(("values", "match"), [
    ({"names": {"0": "a"}}, "names need"),
    ({"names": {"x": "a"}}, "malformed"),
    ({"stride": [0, 16, 32]}, "stride"),
    ({"stride": "abc"}, "stride"),
    ({"imgsz": [-64, 64]}, "imgsz"),
    ({"max_det": -1}, "max_det"),
    ({"nms_free": "yes"}, "nms_free"),
])  # fmt: skip
def test_onnx_with_wrong_metadata_is_one_line(onnx_bytes, values, match):
    from yolokit.backends.onnxruntime_backend import OnnxRuntimeBackend

    with pytest.raises(ExportError, match=match) as error:
        OnnxRuntimeBackend(_with_metadata(onnx_bytes, **values))
    _one_line(error.value)


def test_onnx_graph_that_is_not_a_detector_is_one_line(onnx_bytes):
    import onnx
    from onnx import TensorProto, helper

    from yolokit.backends.onnxruntime_backend import OnnxRuntimeBackend

    graph = helper.make_graph([helper.make_node("ReduceMean", ["images"], ["out"], axes=[2, 3], keepdims=0)], "g",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3])])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.metadata_props.extend(onnx.load_from_string(onnx_bytes).metadata_props)
    with pytest.raises(ExportError, match="not a yolokit model") as error:
        OnnxRuntimeBackend(model.SerializeToString())
    _one_line(error.value)


def test_yaml_errors_stay_one_line(tmp_path):
    from yolokit.data.dataset import load_data_config

    path = tmp_path / "d.yaml"
    path.write_text("train: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(DatasetError) as error:
        load_data_config(path)
    _one_line(error.value)
