"""Every weights file is opened once per load: one open(), one zip directory, one opcode walk of the pickle."""

from __future__ import annotations

import builtins
import hashlib
import os
import pickletools
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from yolokit.weights import load_weights, read_weights, save_weights
from yolokit.weights.foreign import read_ultralytics
from yolokit.weights.inspect import inspect_weights

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REFERENCE = FIXTURES / "yolo26-tiny-shapes.pt"


@pytest.fixture()
def counts(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """Counts ``zipfile.ZipFile`` constructions, ``pickletools.genops`` walks and ``open()`` calls per file."""
    seen: dict[str, list] = {"zip": [], "walks": [], "opens": []}
    real_genops, real_open = pickletools.genops, builtins.open

    class CountingZipFile(zipfile.ZipFile):
        def __init__(self, file: Any, *args: Any, **kwargs: Any) -> None:
            seen["zip"].append(file)
            super().__init__(file, *args, **kwargs)

    def counting_genops(*args: Any, **kwargs: Any) -> Any:
        seen["walks"].append(1)
        return real_genops(*args, **kwargs)

    def counting_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, (str, os.PathLike)):
            seen["opens"].append(Path(file).resolve())
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(zipfile, "ZipFile", CountingZipFile)
    monkeypatch.setattr(pickletools, "genops", counting_genops)
    monkeypatch.setattr(builtins, "open", counting_open)
    return seen


def test_loading_a_reference_pt_opens_it_once(counts: dict[str, list]) -> None:
    model = load_weights(REFERENCE)
    assert len(counts["zip"]) == 1  # the zip directory is parsed once (before: 3 ZipFile objects)
    assert len(counts["walks"]) == 1  # the pickle's opcodes are walked once (before: twice, a third time cached)
    assert counts["opens"].count(REFERENCE.resolve()) == 1  # one open() (before: 4 and a separate sha256 read)
    state_dict, metadata = read_ultralytics(REFERENCE)  # the independent reader: same tensors and sha256
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state_dict.items()) and len(loaded) == len(state_dict) == 708
    assert model.metadata["parent_sha256"] == metadata["parent_sha256"]
    assert metadata["parent_sha256"] == hashlib.sha256(REFERENCE.read_bytes()).hexdigest()


@pytest.mark.parametrize("family", ["yolov8", "yolo11"])
def test_reading_a_reference_pt_opens_it_once(counts: dict[str, list], family: str) -> None:
    path = FIXTURES / f"{family}-tiny-random.pt"
    weights = read_weights(path)
    assert (len(counts["zip"]), len(counts["walks"]), counts["opens"].count(path.resolve())) == (1, 1, 1)
    assert weights.format == "ultralytics-pt"
    assert weights.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == weights.metadata["parent_sha256"]


@pytest.mark.skipif(not os.environ.get("YOLOKIT_REFERENCE_FULL"), reason="set YOLOKIT_REFERENCE_FULL to the "
                    "folder of the official n-scale fixtures")  # fmt: skip
def test_reading_a_full_size_reference_pt_opens_it_once(counts: dict[str, list]) -> None:
    path = Path(os.environ["YOLOKIT_REFERENCE_FULL"]) / "yolo26n-random.pt"
    weights = read_weights(path)
    assert (len(counts["zip"]), len(counts["walks"]), counts["opens"].count(path.resolve())) == (1, 1, 1)
    assert weights.format == "ultralytics-pt" and len(weights.metadata["names"]) == 80


@pytest.fixture(scope="module")
def native_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    model = load_weights(FIXTURES / "yolov8-tiny-shapes.pt")
    root = tmp_path_factory.mktemp("native")
    return {suffix: save_weights(model, root / f"m{suffix}") for suffix in (".pt", ".safetensors")}


@pytest.mark.parametrize(("suffix", "zips"), [(".pt", 1), (".safetensors", 0)])
def test_reading_a_native_file_opens_it_once(counts: dict[str, list], native_files: dict, suffix: str,
                                             zips: int) -> None:  # fmt: skip
    path = native_files[suffix]
    weights = read_weights(path)
    assert counts["opens"].count(path.resolve()) == 1 and len(counts["zip"]) == zips
    assert weights.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(weights.state_dict) == 355 and weights.metadata["names"][2] == "triangle"


def test_inspecting_a_reference_pt_opens_it_once(counts: dict[str, list]) -> None:
    report = inspect_weights(REFERENCE)
    assert (len(counts["zip"]), len(counts["walks"]), counts["opens"].count(REFERENCE.resolve())) == (1, 1, 1)
    assert report["format"] == "ultralytics-pt" and report["tensors"] == 708 and report["error"] is None


@pytest.mark.parametrize("protocol", [2, 4])  # 4 resolves STACK_GLOBAL operands on a second, symbolic walk
def test_scan_pickle_finds_globals_and_the_marker(protocol: int) -> None:
    import collections
    import pickle

    from yolokit.weights._foreign_pickle import scan_pickle

    data = pickle.dumps({"yolokit_format": 1, "state": collections.OrderedDict(a=1)}, protocol=protocol)
    scan = scan_pickle(data, "x.pt", marker="yolokit_format")
    assert [ref.qualname for ref in scan.globals] == ["collections.OrderedDict"] and scan.has_marker
    assert not scan_pickle(data, "x.pt", marker="other").has_marker
    assert not scan_pickle(data, "x.pt").has_marker
