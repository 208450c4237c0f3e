"""Schedule: lr decay, warmup (bias lr down, others up, momentum, accumulation) as pure functions of the iteration."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from yolokit.train.schedule import Schedule, lr_factor, warmup_iterations


def test_lr_factor_linear_and_cosine():
    assert lr_factor(0, 10, 0.01) == 1.0
    assert lr_factor(5, 10, 0.01) == pytest.approx(0.5 * 0.99 + 0.01)
    assert lr_factor(10, 10, 0.01) == pytest.approx(0.01)
    assert lr_factor(0, 10, 0.01, cosine=True) == pytest.approx(1.0)
    assert lr_factor(5, 10, 0.01, cosine=True) == pytest.approx(0.505)
    assert lr_factor(10, 10, 0.01, cosine=True) == pytest.approx(0.01)


def test_warmup_iterations_leave_the_last_epoch_out():
    assert warmup_iterations(3, 100, 50) == 150  # round(3 * nb)
    assert warmup_iterations(3, 2, 10) == 10  # min(3, epochs - 1) epochs
    assert warmup_iterations(0.5, 10, 5) == 2  # round(2.5): banker's rounding as Python's round
    assert warmup_iterations(3, 1, 10) == 0 and warmup_iterations(0, 10, 10) == 0


def _optimizer():
    weight, bias = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    groups = [{"params": [weight], "lr": 0.01, "initial_lr": 0.01, "kind": "weight"},
              {"params": [bias], "lr": 0.03, "initial_lr": 0.03, "kind": "bias"}]
    return torch.optim.SGD(groups, lr=0.01, momentum=0.9, nesterov=True)


SCHEDULE = Schedule(epochs=10, batches_per_epoch=10, lrf=0.1, cosine=False, warmup=20, accumulate=4,
                    warmup_bias_lr=0.1, warmup_momentum=0.8, momentum=0.937)


def test_warmup_interpolates_lr_momentum_and_accumulation():
    opt = _optimizer()
    SCHEDULE.apply(opt, iteration=0, epoch=0)
    weight, bias = opt.param_groups
    assert (weight["lr"], bias["lr"], weight["momentum"]) == (0.0, 0.1, 0.8)
    SCHEDULE.apply(opt, iteration=10, epoch=1)  # halfway; target lr = initial * (1 - 1/10 * 0.9)
    factor = 1 - 0.1 * 0.9
    assert weight["lr"] == pytest.approx(0.5 * 0.01 * factor)
    assert bias["lr"] == pytest.approx(0.5 * 0.1 + 0.5 * 0.03 * factor)
    assert weight["momentum"] == pytest.approx(0.8685)
    assert [SCHEDULE.accumulate_at(i) for i in (0, 5, 10, 15, 20, 21, 500)] == [1, 2, 2, 3, 4, 4, 4]


def test_after_warmup_lr_follows_the_epoch_factor():
    opt = _optimizer()
    SCHEDULE.apply(opt, iteration=20, epoch=2)  # the last warmup iteration lands exactly on the targets
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * (1 - 0.2 * 0.9))
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.937)
    SCHEDULE.apply(opt, iteration=95, epoch=9)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.03 * (0.1 * 0.9 + 0.1))
    assert math.isclose(opt.param_groups[0]["momentum"], 0.937)


def test_optimizers_without_momentum_are_left_alone():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [p], "lr": 0.001, "initial_lr": 0.001, "kind": "weight"}], betas=(0.9, 0.999))
    SCHEDULE.apply(opt, iteration=0, epoch=0)
    assert "momentum" not in opt.param_groups[0] and opt.param_groups[0]["betas"] == (0.9, 0.999)
