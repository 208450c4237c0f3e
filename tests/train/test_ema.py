"""ModelEMA: the decay ramp, every floating tensor averaged, integer buffers copied, state round trip."""

from __future__ import annotations

import math

import torch
from torch import nn

from yolokit.train.ema import ModelEMA


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3))


def test_first_update_copies_then_decays():
    model = _model()
    ema = ModelEMA(model)
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[1].running_mean.fill_(2.0)
    model[1].num_batches_tracked += 5
    ema.update(model)  # d = 0.9999 * (1 - exp(-1/2000)) ~ 5e-4: nearly a copy
    d1 = 0.9999 * (1 - math.exp(-1 / 2000))
    assert ema.current_decay() == d1
    start = _model()[0].weight
    assert torch.allclose(ema.module[0].weight, d1 * start + (1 - d1))
    assert torch.allclose(ema.module[1].running_mean, torch.full((3,), 2 * (1 - d1)))  # BN statistics too
    assert int(ema.module[1].num_batches_tracked) == 5
    before = ema.module[0].weight.clone()
    with torch.no_grad():
        model[0].weight.fill_(-1.0)
    ema.update(model)
    d2 = 0.9999 * (1 - math.exp(-2 / 2000))
    assert torch.allclose(ema.module[0].weight, d2 * before - (1 - d2))
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_state_round_trip():
    model = _model()
    ema = ModelEMA(model)
    ema.update(model)
    other = ModelEMA(_model())
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1
    assert all(torch.equal(a, b) for a, b in zip(ema.module.state_dict().values(),
                                                 other.module.state_dict().values(), strict=True))
