"""prepare_for_training: tensors kept by name and shape, class-head rows copied by class name, the rest fresh."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch

from yolokit.errors import ConfigError, WeightsError
from yolokit.models.builder import build_model
from yolokit.models.spec import load_spec
from yolokit.train.transfer import class_head_keys, match_classes, prepare_for_training
from yolokit.utils.io import sha256_file

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REFERENCE_FULL = Path("/work/shared/fixtures/reference-full")
# state_dict sizes (= the reference key lists in tests/fixtures/keys) and class-score tensors (weight + bias of the
# last 1x1 conv of each of the 3 cv3 branches; YOLO26 also has the 3 one2one_cv3 branches)
FAMILIES = {"yolov8": (355, 6), "yolo11": (499, 6), "yolo26": (708, 12)}
OLD_NAMES = {0: "rectangle", 1: "ellipse", 2: "triangle"}  # the classes of the *-tiny-shapes.pt fixtures


def _fresh(family: str, num_classes: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(load_spec(FIXTURES / f"{family}-tiny.yaml"), num_classes=num_classes)


def _row_keys(model: torch.nn.Module) -> set[str]:
    return {key for pair in class_head_keys(model) for key in pair}


def test_class_head_keys_name_the_last_conv_of_every_class_branch() -> None:
    keys = class_head_keys(_fresh("yolo26", 3, seed=0))
    assert keys[0] == ("model.23.cv3.0.2.weight", "model.23.cv3.0.2.bias")
    assert keys[-1] == ("model.23.one2one_cv3.2.2.weight", "model.23.one2one_cv3.2.2.bias")
    assert len(keys) == 6
    assert [w for w, _ in class_head_keys(_fresh("yolov8", 3, seed=0))] == [
        f"model.22.cv3.{i}.2.weight" for i in range(3)]


def test_match_classes_by_name() -> None:
    assert match_classes({0: "dog", 1: "star", 2: "cat"}, {0: "cat", 1: "dog"}) == {0: 1, 2: 0}
    assert match_classes({0: "a"}, {0: "b"}) == {}
    assert match_classes({0: " a "}, {3: "a", 5: "a"}) == {0: 3}  # stripped; duplicates: the lowest old id


@pytest.mark.parametrize("family", list(FAMILIES))
def test_reference_pt_to_fewer_classes_copies_the_matched_rows(family: str, caplog) -> None:
    """3 -> 2 classes, new class 0 'triangle' is old class 2; new class 1 'star' matches nothing."""
    source_file = FIXTURES / f"{family}-tiny-shapes.pt"
    from yolokit.weights import read_weights

    old = read_weights(source_file).state_dict
    total, n_rows = FAMILIES[family]
    torch.manual_seed(7)
    with caplog.at_level(logging.INFO, logger="yolokit.train.transfer"):
        model, result = prepare_for_training(source_file, {0: "triangle", 1: "star"})
    fresh = _fresh(family, 2, seed=7).state_dict()  # the same RNG draws as the model built inside
    rows = _row_keys(model)
    assert len(rows) == n_rows
    assert (result.transferred, result.total) == (total - n_rows, total)
    assert result.skipped == [] and sorted(result.partial) == sorted(rows) and result.class_map == {0: 2}
    assert result.source_sha256 == sha256_file(source_file)
    assert model.names == {0: "triangle", 1: "star"} and model.nc == 2 and model.training
    assert model.metadata["parent_sha256"] == sha256_file(source_file)
    state = model.state_dict()
    for key, tensor in state.items():
        if key not in rows:
            assert torch.equal(tensor, old[key].float()), key
            continue
        assert torch.equal(tensor[0], old[key][2].float()), key  # the 'triangle' row, copied exactly
        assert torch.equal(tensor[1], fresh[key][1]), key  # 'star': the builder's own initialisation
    strides = model.stride.tolist()
    for level, (_, bias_key) in enumerate(class_head_keys(model)):
        prior = math.log(5 / 2 / (640 / strides[level % 3]) ** 2)  # Detect.bias_init for nc=2
        assert state[bias_key][1].item() == pytest.approx(prior, rel=1e-6)
    assert f"Transferred {total - n_rows}/{total} tensors from {source_file}" in caplog.text
    assert "copied head rows for 1 classes matched by name: triangle (2 -> 0)" in caplog.text


def test_same_names_and_count_transfer_everything() -> None:
    source = _fresh("yolo11", 3, seed=1)
    source.names = dict(OLD_NAMES)
    model, result = prepare_for_training(source, ["rectangle", "ellipse", "triangle"])
    assert (result.transferred, result.total, result.skipped, result.partial) == (499, 499, [], [])
    assert result.source_sha256 is None and model.metadata["parent_sha256"] is None
    for key, tensor in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], tensor), key


def test_same_names_in_another_order_follow_the_names() -> None:
    source = _fresh("yolo11", 3, seed=1)
    source.names = dict(OLD_NAMES)
    model, result = prepare_for_training(source, {0: "triangle", 1: "rectangle", 2: "ellipse"})
    assert result.class_map == {0: 2, 1: 0, 2: 1} and result.transferred == 499
    old, new = source.state_dict(), model.state_dict()
    for key in _row_keys(model):
        assert torch.equal(new[key], old[key][[2, 0, 1]]), key


def test_no_matching_name_keeps_every_class_row_fresh(caplog) -> None:
    source = _fresh("yolo11", 3, seed=1)
    source.names = dict(OLD_NAMES)
    torch.manual_seed(3)
    with caplog.at_level(logging.INFO, logger="yolokit.train.transfer"):
        model, result = prepare_for_training(source, {0: "cat", 1: "dog", 2: "bird"})  # same count, other names
    fresh = _fresh("yolo11", 3, seed=3).state_dict()
    assert result.class_map == {} and result.transferred == 499 - 6 and sorted(result.skipped) == sorted(
        _row_keys(model))
    for key in result.skipped:
        assert torch.equal(model.state_dict()[key], fresh[key]), key
    assert "no class name matches the pretrained classes" in caplog.text


def test_native_safetensors_source_and_an_explicit_spec(tmp_path) -> None:
    from yolokit.weights import save_weights

    source = _fresh("yolov8", 3, seed=2)
    source.names = dict(OLD_NAMES)
    path = save_weights(source, tmp_path / "shapes.safetensors")
    model, result = prepare_for_training(path, {0: "ellipse"}, spec=FIXTURES / "yolov8-tiny.yaml")
    assert (result.transferred, result.class_map, len(result.partial)) == (355, {0: 1}, 0)  # 1 of 1 matched
    assert result.transferred + len(result.partial) + len(result.skipped) == result.total
    for weight_key, bias_key in class_head_keys(model):
        assert torch.equal(model.state_dict()[weight_key][0], source.state_dict()[weight_key][1])
        assert torch.equal(model.state_dict()[bias_key], source.state_dict()[bias_key][1:2])


def test_bare_safetensors_needs_a_spec_and_transfers_the_head_by_shape(tmp_path) -> None:
    from safetensors.torch import save_file

    source = _fresh("yolov8", 3, seed=2)
    path = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    with pytest.raises(WeightsError, match="pass spec="):
        prepare_for_training(path, ["a", "b", "c"])
    model, result = prepare_for_training(path, ["a", "b", "c"], spec=FIXTURES / "yolov8-tiny.yaml")
    assert (result.transferred, result.class_map) == (355, {})  # no names in the file: by name and shape only


def test_yolo_facade_source_records_the_file_hash() -> None:
    from yolokit import YOLO

    source_file = FIXTURES / "yolo11-tiny-shapes.pt"
    _, result = prepare_for_training(YOLO(source_file), ["ellipse", "rectangle"])
    assert result.source_sha256 == sha256_file(source_file) and result.class_map == {0: 1, 1: 0}
    assert result.transferred == 499  # both classes matched: every row copied


@pytest.mark.parametrize("names", [{}, {1: "a"}, "abc", 3])
def test_bad_class_names_are_refused(names) -> None:
    with pytest.raises(ConfigError, match="class names"):
        prepare_for_training(_fresh("yolov8", 3, seed=0), names)


def test_bad_source_type_is_refused() -> None:
    with pytest.raises(ConfigError, match="pretrained weights"):
        prepare_for_training(42, ["a"])


@pytest.mark.skipif(not (REFERENCE_FULL / "yolo26n-random.pt").is_file(), reason="reference-full fixtures absent")
def test_yolo26n_80_to_5_classes_transfers_606_of_708_like_the_reference() -> None:
    """The n model's class branch is max(64, min(nc, 100)) wide: 80 wide at 80 classes, 64 at 5 (all re-init)."""
    names = {0: "person", 1: "star", 2: "car", 3: "kite", 4: "blob"}  # COCO names on a random-init checkpoint
    model, result = prepare_for_training(REFERENCE_FULL / "yolo26n-random.pt", names)
    assert (result.transferred, result.total, len(result.skipped)) == (606, 708, 102)
    assert result.class_map == {} and model.nc == 5  # rows cannot be copied across widths
