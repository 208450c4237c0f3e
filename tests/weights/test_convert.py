"""convert_weights: any readable format -> .safetensors / native .pt, keeping names, spec and provenance."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from yolokit.errors import WeightsError
from yolokit.weights import convert_weights, detect_format, load_weights, read_weights, save_weights

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REFERENCE = FIXTURES / "yolo11-tiny-shapes.pt"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def imported() -> torch.nn.Module:
    return load_weights(REFERENCE)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_convert_reference_checkpoint(imported: torch.nn.Module, tmp_path: Path, suffix: str) -> None:
    out = convert_weights(REFERENCE, tmp_path / f"yolo11-tiny{suffix}")
    assert detect_format(out) == ("safetensors" if suffix == ".safetensors" else "yolokit-pt")
    if suffix == ".pt":
        assert set(torch.load(out, weights_only=True)) >= {"yolokit_format", "metadata", "state_dict"}
    reloaded = load_weights(out)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(reloaded(x), imported(x))
    source_meta, meta = imported.metadata, reloaded.metadata
    assert meta["names"] == source_meta["names"] == imported.names and meta["spec"] == source_meta["spec"]
    assert meta["stride"] == source_meta["stride"] and meta["imgsz"] == source_meta["imgsz"]
    assert meta["parent_sha256"] == _sha256(REFERENCE)
    provenance = meta["provenance"]
    assert provenance["source_format"] == "ultralytics-pt" and provenance["source"] == "ultralytics"
    assert provenance["source_sha256"] == _sha256(REFERENCE)
    for key in ("reference_version", "date", "train_args"):
        assert provenance[key] == source_meta["provenance"][key] and provenance[key], key


def test_reference_checkpoint_stored_fp32_or_fp16(imported: torch.nn.Module, tmp_path: Path) -> None:
    full = read_weights(convert_weights(REFERENCE, tmp_path / "a.safetensors"))
    half = read_weights(convert_weights(REFERENCE, tmp_path / "b.safetensors", half=True))
    for key, value in imported.state_dict().items():
        assert torch.equal(full.state_dict[key], value), key
        if value.is_floating_point():
            assert full.state_dict[key].dtype == torch.float32 and half.state_dict[key].dtype == torch.float16
            # the reference stores fp16, so fp16 storage of the imported weights loses nothing
            assert torch.equal(half.state_dict[key].float(), value), key
        else:
            assert half.state_dict[key].dtype == value.dtype


def test_safetensors_to_pt_to_safetensors(tmp_path: Path) -> None:
    from yolokit.models.builder import build_model
    from yolokit.models.spec import load_spec

    torch.manual_seed(0)
    model = build_model(load_spec(FIXTURES / "yolo26-tiny.yaml"), num_classes=4)
    model.names = {0: "a", 1: "b", 2: "c", 3: "d"}
    model.metadata = {"provenance": {"train_args": {"epochs": 3}}}
    first = save_weights(model, tmp_path / "a.safetensors", half=True)
    middle = convert_weights(first, tmp_path / "b.pt", half=True)
    last = convert_weights(middle, tmp_path / "c.safetensors", half=True)
    a, b, c = read_weights(first), read_weights(middle), read_weights(last)
    for key, value in a.state_dict.items():
        assert value.dtype == b.state_dict[key].dtype == c.state_dict[key].dtype
        assert torch.equal(value, b.state_dict[key]) and torch.equal(value, c.state_dict[key]), key
    assert list(c.state_dict) == list(a.state_dict)
    assert b.metadata["parent_sha256"] == a.sha256 and c.metadata["parent_sha256"] == b.sha256
    assert c.metadata["provenance"] == {"train_args": {"epochs": 3}, "source_format": "yolokit-pt"}
    for key in ("spec", "names", "stride", "imgsz", "task", "format_version"):
        assert a.metadata[key] == b.metadata[key] == c.metadata[key], key


def test_convert_refuses_bad_targets_and_sources(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="unknown suffix '.onnx'"):
        convert_weights(REFERENCE, tmp_path / "out.onnx")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not weights at all")
    with pytest.raises(WeightsError, match="garbage.pt: unrecognised weights file"):
        convert_weights(garbage, tmp_path / "out.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.pt"]


def test_reference_checkpoint_is_detected_by_content(tmp_path: Path) -> None:
    misnamed = tmp_path / "looks-native.safetensors"
    misnamed.write_bytes(REFERENCE.read_bytes())
    assert detect_format(misnamed) == "ultralytics-pt"
    assert read_weights(misnamed).metadata["provenance"]["source"] == "ultralytics"
