"""TrainConfig: the reference's defaults, range checks before any work, strict keys, and the keys the user gave."""

from __future__ import annotations

import pytest

from yolokit.config import make_config
from yolokit.errors import ConfigError
from yolokit.train.config import TrainConfig


def test_defaults_are_the_references():
    cfg = TrainConfig()
    assert (cfg.epochs, cfg.patience, cfg.batch, cfg.imgsz, cfg.save_period) == (100, 100, 16, 640, -1)
    assert (cfg.optimizer, cfg.lr0, cfg.lrf, cfg.momentum, cfg.weight_decay) == ("auto", 0.01, 0.01, 0.937, 5e-4)
    assert (cfg.warmup_epochs, cfg.warmup_momentum, cfg.warmup_bias_lr, cfg.nbs) == (3.0, 0.8, 0.1, 64)
    assert (cfg.box, cfg.cls, cfg.dfl, cfg.close_mosaic, cfg.seed, cfg.deterministic) == (7.5, 0.5, 1.5, 10, 0, True)
    assert (cfg.mosaic, cfg.mixup, cfg.fliplr, cfg.hsv_s, cfg.translate, cfg.scale) == (1.0, 0.0, 0.5, 0.7, 0.1, 0.5)
    assert (cfg.project, cfg.name, cfg.exist_ok, cfg.fraction, cfg.freeze) == ("runs", "train", False, 1.0, None)


def test_cli_strings_are_converted_and_the_given_keys_recorded():
    cfg = make_config(TrainConfig, {"data": "d.yaml", "epochs": "5", "lr0": "0.002", "optimizer": "sgd",
                                    "freeze": "model.0.,3", "cos_lr": "true", "pretrained": "w.safetensors"})
    assert (cfg.epochs, cfg.lr0, cfg.optimizer, cfg.cos_lr, cfg.pretrained) == (5, 0.002, "SGD", True, "w.safetensors")
    assert cfg.freeze == ("model.0.", 3)
    assert cfg.given == {"data", "epochs", "lr0", "optimizer", "freeze", "cos_lr", "pretrained"}
    assert make_config(TrainConfig, freeze="10").freeze == 10
    assert TrainConfig(lr0=0.01).given == {"lr0"}  # the default value, given explicitly, still counts as given
    assert TrainConfig().given == frozenset()


def test_restore_keeps_values_and_given_keys():
    cfg = make_config(TrainConfig, data="d.yaml", freeze=[0, "model.1*"], momentum=0.9)
    again = TrainConfig.restore(cfg.to_dict(), cfg.given)
    assert again == cfg and again.given == cfg.given and again.freeze == (0, "model.1*")
    with pytest.raises(ConfigError, match="unknown keys"):
        TrainConfig.restore({"epochz": 3}, [])


@pytest.mark.parametrize(("values", "message"), [
    ({"epochs": 0}, "epochs must be >= 1, got 0: pass e.g. epochs=100"),
    ({"lr0": -0.1}, "lr0 must be > 0"),
    ({"lrf": 1.5}, r"lrf must be in \[0, 1\]"),
    ({"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
    ({"batch": 0}, "batch must be >= 1"),
    ({"imgsz": 16}, "imgsz must be in"),
    ({"fraction": 0.0}, r"fraction must be in \(0, 1\]"),
    ({"freeze": -2}, "freeze must be >= 0"),
    ({"scale": 1.5}, r"scale must be in \[0, 1\)"),
    ({"fliplr": 2.0}, r"fliplr must be in \[0, 1\]"),
    ({"optimizer": "rmsprop"}, "optimizer must be one of auto, SGD, Adam, AdamW, MuSGD"),
    ({"device": "gpu"}, "device must be"),
    ({"name": ""}, "must not be empty"),
])
def test_bad_values_fail_on_construction_with_one_line(values, message):
    with pytest.raises(ConfigError, match=message) as info:
        make_config(TrainConfig, values)
    assert "\n" not in str(info.value)


def test_unknown_key_names_the_closest():
    with pytest.raises(ConfigError, match="unknown train setting 'lr_0': did you mean 'lr0'"):
        make_config(TrainConfig, lr_0=0.1)
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        make_config(TrainConfig, {"epoch": "3"})
