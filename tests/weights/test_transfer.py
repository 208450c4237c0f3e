"""transfer_weights(model, source): transfer by name and shape, the report, strict mode."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from yolokit.errors import WeightsError
from yolokit.weights import TransferReport, load_weights, save_weights, transfer_weights

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# yolo11-tiny has the yolo11n layout (depth 0.5): 499 state_dict entries. With nc 3 -> 5 only the last 1x1 conv of
# each of the 3 class branches changes shape (cv3.i.2: 3 -> 5 output channels; the hidden width max(16, min(nc, 100))
# stays 16), i.e. 3 weights + 3 biases.
YOLO11_TINY_TENSORS = 499
CLASS_HEAD_KEYS = [f"model.23.cv3.{i}.2.{p}" for i in range(3) for p in ("weight", "bias")]


def _model(spec_file: str, num_classes: int, seed: int) -> torch.nn.Module:
    from yolokit.models.builder import build_model
    from yolokit.models.spec import load_spec

    torch.manual_seed(seed)
    return build_model(load_spec(FIXTURES / spec_file), num_classes=num_classes).eval()


@pytest.fixture(scope="module")
def source_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = _model("yolo11-tiny.yaml", 3, seed=0)
    return save_weights(model, tmp_path_factory.mktemp("src") / "nc3.safetensors")


def test_transfer_to_a_different_class_count(source_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = load_weights(source_file).state_dict()
    target = _model("yolo11-tiny.yaml", 5, seed=1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    assert len(before) == YOLO11_TINY_TENSORS
    with caplog.at_level(logging.INFO, logger="yolokit.weights"):
        report = transfer_weights(target, source_file)
    assert report == TransferReport(transferred=493, total=499, skipped=CLASS_HEAD_KEYS)
    after = target.state_dict()
    for key in after:
        expected = before[key] if key in CLASS_HEAD_KEYS else source[key]
        assert torch.equal(after[key], expected), key
    assert f"Transferred 493/499 tensors from {source_file}" in caplog.text
    assert "model.23.cv3.2.2.bias" in caplog.text


def test_transfer_into_the_same_architecture_is_complete_and_strict_passes(source_file: Path) -> None:
    target = _model("yolo11-tiny.yaml", 3, seed=2)
    report = transfer_weights(target, source_file, strict=True)
    assert (report.transferred, report.total, report.skipped) == (499, 499, [])
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(target(x), load_weights(source_file)(x))


def test_strict_transfer_refuses_a_mismatch_and_changes_nothing(source_file: Path) -> None:
    target = _model("yolo11-tiny.yaml", 5, seed=1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(WeightsError) as info:
        transfer_weights(target, source_file, strict=True)
    message = str(info.value)
    assert str(source_file) in message and "6 with a different shape" in message
    assert "model.23.cv3.0.2.weight expected (5, 16, 1, 1) found (3, 16, 1, 1)" in message
    after = target.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_transfer_across_architectures_skips_what_does_not_match(source_file: Path) -> None:
    source = load_weights(source_file).state_dict()
    target = _model("yolov8-tiny.yaml", 3, seed=0)
    shapes = {k: tuple(v.shape) for k, v in target.state_dict().items()}
    report = transfer_weights(target, source_file)
    fits = [k for k in shapes if k in source and tuple(source[k].shape) == shapes[k]]
    assert report.total == len(shapes) == 355  # the yolov8n layout
    assert report.transferred == len(fits) and report.skipped == [k for k in shapes if k not in fits]
    assert "model.0.conv.weight" in fits and "model.2.cv1.conv.weight" in fits  # C2f and C3k2 share cv1
    assert "model.2.cv2.conv.weight" in report.skipped  # C3k2's cv2 sees a different input width
    assert "model.22.dfl.conv.weight" in report.skipped  # the v8 head is layer 22, the v11 head layer 23
    after = target.state_dict()
    assert all(torch.equal(after[k], source[k]) for k in fits)


def test_transfer_from_fp16_keeps_the_model_fp32(tmp_path: Path) -> None:
    source = _model("yolo11-tiny.yaml", 3, seed=0)
    path = save_weights(source, tmp_path / "half.pt", half=True)
    target = _model("yolo11-tiny.yaml", 3, seed=5)
    assert transfer_weights(target, path).transferred == YOLO11_TINY_TENSORS
    weight = target.model[0].conv.weight
    assert weight.dtype == torch.float32 and torch.equal(weight, source.model[0].conv.weight.half().float())


def test_transfer_from_a_plain_safetensors_file(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source = _model("yolo11-tiny.yaml", 3, seed=0)
    subset = {k: v.contiguous() for k, v in source.state_dict().items() if k.startswith("model.0.")}
    save_file(subset, str(tmp_path / "part.safetensors"))
    target = _model("yolo11-tiny.yaml", 3, seed=9)
    report = transfer_weights(target, tmp_path / "part.safetensors")
    assert report.transferred == len(subset) == 6 and report.total == YOLO11_TINY_TENSORS
    assert torch.equal(target.model[0].conv.weight, source.model[0].conv.weight)
