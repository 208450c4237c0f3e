"""freeze_layers: by count, index, glob and fragment; DFL always frozen; frozen BatchNorm held in eval."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from yolokit.errors import ConfigError
from yolokit.models.builder import build_model
from yolokit.train.freeze import FreezeReport, assert_frozen, freeze_layers, keep_frozen_bn_eval, train_mode

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TOTAL = 355_121  # parameters of yolov8-tiny (3 classes)
LAYER0 = 8 * 3 * 3 * 3 + 8 + 8  # Conv(3 -> 8, 3x3, no bias) + BN weight and bias = 232
LAYER1 = 8 * 8 * 3 * 3 + 8 + 8  # Conv(8 -> 8, 3x3) + BN = 592
DFL = 16  # the (1, 16, 1, 1) projection of the v8 head


@pytest.fixture(scope="module")
def built() -> nn.Module:
    torch.manual_seed(0)
    return build_model(FIXTURES / "yolov8-tiny.yaml")


@pytest.fixture()
def model(built) -> nn.Module:
    return copy.deepcopy(built)  # a fresh copy per test (building takes seconds on a busy machine)


def _layer(name: str) -> int:
    return int(name.split(".")[1])


def _with_params(model: nn.Module, layers) -> set[int]:
    """The layers among ``layers`` that have parameters (Upsample and Concat layers have none)."""
    return {i for i in layers if list(model.model[i].parameters())}


def _frozen(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if not p.requires_grad}


def test_freeze_count_freezes_layers_0_to_n_minus_1_and_counts_exactly(model, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="yolokit.train.freeze"):
        report = freeze_layers(model, 2)
    assert (report.frozen_params, report.trainable_params) == (LAYER0 + LAYER1 + DFL, TOTAL - LAYER0 - LAYER1 - DFL)
    for name, param in model.named_parameters():
        assert param.requires_grad == (_layer(name) >= 2 and ".dfl." not in name), name
    assert set(report.frozen_names) == _frozen(model) and len(report.frozen_names) == 3 + 3 + 1
    assert report.frozen_bn == ("model.0.bn", "model.1.bn")
    assert f"trainable parameters {TOTAL - 840:,}, frozen 840" in caplog.text and "layers 0-1" in caplog.text


def test_freeze_10_means_layers_0_to_9(model) -> None:
    freeze_layers(model, 10)
    frozen_layers = {_layer(name) for name in _frozen(model)}
    assert frozen_layers == set(range(10)) | {22}  # layer 9 (SPPF) included; 22: the head's DFL conv only
    assert all(p.requires_grad for name, p in model.named_parameters() if 10 <= _layer(name) <= 21)


def test_freeze_by_index_glob_and_fragment(model) -> None:
    freeze_layers(model, [0, "model.1*", "22.cv2"])
    frozen = _frozen(model)
    frozen_layers = {_layer(name) for name in frozen}
    assert frozen_layers == {0, 1, 22} | _with_params(model, range(10, 20)) == {0, 1, 12, 15, 16, 18, 19, 22}
    head = {name for name in frozen if _layer(name) == 22}
    assert head == {name for name, _ in model.named_parameters() if name.startswith("model.22.cv2.")} | {
        "model.22.dfl.conv.weight"}


def test_glob_without_the_model_prefix_and_fragment_boundaries(model) -> None:
    freeze_layers(model, ["2*", "model.0."])  # '2*' = layers 2 and 20-22; 'model.0.' never matches model.10...
    assert {_layer(name) for name in _frozen(model)} == {0, 2, 21, 22}  # 20 is a Concat
    assert not any(name.startswith("model.22.cv3") and p.requires_grad for name, p in model.named_parameters())


def test_cli_text_forms(model, built) -> None:
    assert len(freeze_layers(model, "2").frozen_names) == 7  # a count, as freeze=2
    report = freeze_layers(copy.deepcopy(built), "[3, 'model.4.']")
    assert {_layer(n) for n in report.frozen_names} == {3, 4, 22}


def test_dfl_is_always_frozen_and_manual_freezes_are_kept(model) -> None:
    model.model[22].dfl.conv.weight.requires_grad_(True)
    model.model[5].conv.weight.requires_grad_(False)  # frozen by hand (the reference's trainer would undo this)
    report = freeze_layers(model, None)
    assert set(report.frozen_names) == {"model.22.dfl.conv.weight", "model.5.conv.weight"}
    assert report.frozen_params == DFL + model.model[5].conv.weight.numel()
    assert report.frozen_bn == ()


def test_frozen_batchnorm_stays_in_eval_and_its_statistics_do_not_move(model) -> None:
    report = freeze_layers(model, 2)
    model.train()
    with pytest.raises(ConfigError, match="BatchNorm layers are in train mode"):
        assert_frozen(model, report)
    train_mode(model, report)
    assert not model.model[0].bn.training and not model.model[1].bn.training and model.model[2].cv1.bn.training
    assert model.training
    frozen_mean = model.model[0].bn.running_mean.clone()
    live_mean = model.model[2].cv1.bn.running_mean.clone()
    model(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(model.model[0].bn.running_mean, frozen_mean)
    assert not torch.equal(model.model[2].cv1.bn.running_mean, live_mean)
    assert_frozen(model, report)
    train_mode(model, report, mode=False)
    assert not model.training and not model.model[2].cv1.bn.training


def test_keep_frozen_bn_eval_after_a_plain_train_call(model) -> None:
    report = freeze_layers(model, [1])
    model.train()
    keep_frozen_bn_eval(model, report)
    assert not model.model[1].bn.training and model.model[0].bn.training


def test_assert_frozen_refuses_a_silent_unfreeze(model) -> None:
    report = freeze_layers(model, 1)
    assert_frozen(model, report)
    model.model[0].conv.weight.requires_grad_(True)
    with pytest.raises(ConfigError, match="1 frozen parameters became trainable again .first: model.0.conv.weight"):
        assert_frozen(model, report)


@pytest.mark.parametrize("freeze, message", [
    (["model.99*"], "'model.99\\*' matches no parameter"),
    (["cv9"], "'cv9' matches no parameter"),
    ([23], "layer index 23 is out of range; this model has layers 0-22"),
    ([10], "layer 10 .Upsample. has no parameters to freeze"),
    (24, "between 0 and 23"),
    (-1, "between 0 and 23"),
    (True, "found True"),
    ([1.5], "list items must be layer indices or name strings"),
    (object(), "expected an int or a list"),
])
def test_bad_freeze_values_are_one_line_config_errors(model, freeze, message) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        freeze_layers(model, freeze)
    assert "\n" not in str(info.value)
    assert all(p.requires_grad for name, p in model.named_parameters() if ".dfl." not in name)  # nothing changed


def test_freezing_everything_warns(model, caplog) -> None:
    report = freeze_layers(model, 23)
    assert report == FreezeReport(tuple(n for n, _ in model.named_parameters()), 0, TOTAL, report.frozen_bn)
    assert "froze every parameter" in caplog.text
