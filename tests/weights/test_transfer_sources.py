"""transfer_weights: every kind of source, the reasons in the report, bad arguments; load_model; task from the model."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from yolokit.errors import WeightsError
from yolokit.weights import TransferReport, load_model, load_weights, read_weights, save_weights, transfer_weights

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CLASS_HEAD = [f"model.23.cv3.{i}.2.{p}" for i in range(3) for p in ("weight", "bias")]  # nc-shaped in yolo11


def _model(num_classes: int, seed: int) -> torch.nn.Module:
    from yolokit.models.builder import build_model
    from yolokit.models.spec import load_spec

    torch.manual_seed(seed)
    return build_model(load_spec(FIXTURES / "yolo11-tiny.yaml"), num_classes=num_classes).eval()


@pytest.fixture(scope="module")
def source() -> torch.nn.Module:
    model = _model(3, seed=0)
    model.names = {0: "a", 1: "b", 2: "c"}
    return model


@pytest.fixture(scope="module")
def target() -> torch.nn.Module:
    return _model(5, seed=1)


@pytest.fixture(scope="module")
def source_file(source: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_weights(source, tmp_path_factory.mktemp("src") / "nc3.pt")


def _sources(source: torch.nn.Module, path: Path) -> dict:
    return {"path": path, "str": str(path), "file": read_weights(path), "state_dict": source.state_dict(),
            "module": source}  # fmt: skip


@pytest.mark.parametrize("kind", ["path", "str", "file", "state_dict", "module"])
def test_every_source_kind_gives_the_same_report(source, target, source_file, kind: str, caplog) -> None:
    with torch.no_grad():
        for tensor in target.state_dict().values():
            tensor.fill_(7)
    with caplog.at_level(logging.INFO, logger="yolokit.weights"):
        report = transfer_weights(target, _sources(source, source_file)[kind])
    assert report == TransferReport(transferred=493, total=499, skipped=CLASS_HEAD)
    assert report.missing == [] and report.unexpected == []  # same names, other shapes
    assert report.mismatched["model.23.cv3.0.2.weight"] == ((5, 16, 1, 1), (3, 16, 1, 1))
    assert report.mismatched["model.23.cv3.2.2.bias"] == ((5,), (3,)) and list(report.mismatched) == CLASS_HEAD
    assert set(report.reasons.values()) == {"shape mismatch"}
    label = {"path": str(source_file), "str": str(source_file), "file": str(source_file),
             "state_dict": "a state_dict", "module": "a DetectionModel"}[kind]  # fmt: skip
    assert report.source == label and f"Transferred 493/499 tensors from {label}" in caplog.text
    assert "Skipped 6 tensors (0 missing from the source, 6 of a different shape)" in caplog.text
    after, expected = target.state_dict(), source.state_dict()
    assert all(torch.equal(after[k], expected[k]) for k in after if k not in CLASS_HEAD)
    assert all(bool((after[k] == 7).all()) for k in CLASS_HEAD)


def test_missing_and_unexpected_tensors_are_reported(source, target) -> None:
    partial = {k: v for k, v in source.state_dict().items() if k.startswith("model.0.")}
    partial["extra.weight"] = torch.zeros(2)
    report = transfer_weights(target, partial)
    assert (report.transferred, report.total, report.unexpected) == (6, 499, ["extra.weight"])
    assert len(report.missing) == 493 and "model.1.conv.weight" in report.missing
    assert report.skipped == [k for k in target.state_dict() if not k.startswith("model.0.")]
    assert report.reasons["model.1.conv.weight"] == "missing"
    assert report.reasons["model.23.cv3.0.2.weight"] == "missing" and report.mismatched == {}


def test_bad_arguments_are_one_line_errors(source, source_file) -> None:
    with pytest.raises(WeightsError, match="expects a file path, a WeightsFile, a state_dict or a torch module"):
        transfer_weights(source, 3.5)
    with pytest.raises(WeightsError, match="state_dict entry 'w' is not a str name -> tensor"):
        transfer_weights(source, {"w": [1.0]})
    with pytest.raises(WeightsError, match="expects a torch model first, found OrderedDict"):
        transfer_weights(source.state_dict(), source_file)
    with pytest.raises(WeightsError, match="load_model expects a file path, found dict"):
        load_model({})
    with pytest.raises(TypeError):  # the old two-argument form is gone: transfer_weights(model, path)
        load_weights(source, source_file)


def test_load_model_is_load_weights(source, source_file) -> None:
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(load_model(source_file)(x), source(x))
        assert torch.equal(load_weights(source_file)(x), source(x))


def test_metadata_task_comes_from_the_model(source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source, "metadata", {"task": "stale", "note": "kept"}, raising=False)  # carried lineage
    meta = read_weights(save_weights(source, tmp_path / "m.safetensors")).metadata
    assert meta["task"] == "detect" and meta["note"] == "kept"  # ... never decides the task
    monkeypatch.setattr(source, "task", "segment", raising=False)  # the model is asked: a task this yolokit
    with pytest.raises(WeightsError, match="task 'segment' is not supported"):  # cannot store is refused
        save_weights(source, tmp_path / "s.safetensors")
