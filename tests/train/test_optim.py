"""Optimizers: Newton-Schulz, MuSGD on hand-computed steps, parameter groups, and the auto rule honouring the user."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from yolokit.config import make_config
from yolokit.train.config import TrainConfig
from yolokit.train.optim import (
    MuSGD,
    OptimizerChoice,
    build_optimizer,
    choose_optimizer,
    muon_direction,
    newton_schulz,
    param_groups,
    scaled_weight_decay,
)
from yolokit.train.schedule import nominal_accumulate

A, B, C = 3.4445, -4.7750, 2.0315


def _scalar_ns(s: float, steps: int = 5) -> float:
    """Newton-Schulz on s * I stays a multiple of I: the scalar recursion s <- a s + b s^3 + c s^5."""
    for _ in range(steps):
        s = A * s + B * s**3 + C * s**5
    return s


def test_newton_schulz_on_a_multiple_of_the_identity_matches_the_scalar_recursion():
    out = newton_schulz(2 * torch.eye(2))  # normalised to I / sqrt(2): every singular value 0.7071
    expected = _scalar_ns(1 / 2**0.5)
    assert 0.7 < expected < 1.3
    assert torch.allclose(out, expected * torch.eye(2), atol=1e-6)


def test_newton_schulz_is_nearly_orthogonal_and_points_like_u_vt():
    g = torch.tensor([[3.0, 1.0, 0.0], [1.0, 2.0, 1.0], [0.5, 0.0, 4.0], [1.0, 1.0, 1.0]])  # tall (4, 3)
    out = newton_schulz(g)
    singular = torch.linalg.svdvals(out)
    assert out.shape == g.shape and singular.min() > 0.6 and singular.max() < 1.25
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    cosine = (out * (u @ vh)).sum() / (out.norm() * (u @ vh).norm())
    assert cosine > 0.95  # singular values spread over ~0.7-1.2, not exactly 1
    with pytest.raises(ValueError, match="2-D"):
        newton_schulz(torch.ones(2, 2, 2))


def test_muon_direction_flattens_conv_weights_and_scales_tall_matrices():
    w = torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    flat = newton_schulz(w.reshape(8, -1)).reshape(w.shape)
    assert torch.allclose(muon_direction(w), flat)  # square kernel: scale sqrt(max(1, 3/3)) = 1
    tall = torch.randn(6, 2, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(muon_direction(tall), newton_schulz(tall) * 3**0.5)


def test_musgd_step_by_hand():
    weight = nn.Parameter(torch.zeros(2, 2))
    bias = nn.Parameter(torch.zeros(2))
    opt = MuSGD([{"params": [weight], "use_muon": True}, {"params": [bias], "use_muon": False}], lr=0.1,
                momentum=0.9)
    weight.grad, bias.grad = 2 * torch.eye(2), torch.tensor([1.0, -2.0])
    opt.step()
    # Muon: m = 0.1 g = 0.2 I, u = 0.1 g + 0.9 m = 0.38 I -> NS -> s5 I, applied at 0.2 lr; SGD: b = g, step g + 0.9 b.
    s5 = _scalar_ns(1 / 2**0.5)
    assert torch.allclose(weight, -(0.1 * 0.2 * s5 + 0.1 * 3.8) * torch.eye(2), atol=1e-6)
    assert torch.allclose(bias, -0.1 * 1.9 * torch.tensor([1.0, -2.0]))  # plain Nesterov SGD


def test_musgd_without_muon_groups_is_torch_nesterov_sgd():
    gen = torch.Generator().manual_seed(0)
    start, grads = torch.randn(3, 4, generator=gen), [torch.randn(3, 4, generator=gen) for _ in range(3)]
    ours, theirs = nn.Parameter(start.clone()), nn.Parameter(start.clone())
    a = MuSGD([{"params": [ours], "use_muon": False}], lr=0.05, momentum=0.9, weight_decay=0.01)
    b = torch.optim.SGD([theirs], lr=0.05, momentum=0.9, weight_decay=0.01, nesterov=True)
    for g in grads:
        ours.grad, theirs.grad = g.clone(), g.clone()
        a.step()
        b.step()
    assert torch.allclose(ours, theirs, atol=1e-7)


class _Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cv2 = nn.Conv2d(4, 4, 1)
        self.cv3 = nn.Conv2d(4, 2, 1)


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.head = _Head()
        self.frozen = nn.Conv2d(4, 4, 1)
        self.frozen.requires_grad_(False)


def _kinds(groups):
    return {id(p): (g["kind"], g["weight_decay"], g["lr"]) for g in groups for p in g["params"]}


def test_param_groups_no_decay_on_bn_and_biases_frozen_left_out():
    m = _Tiny()
    kinds = _kinds(param_groups(m, lr=0.01, weight_decay=0.001))
    assert kinds[id(m.conv.weight)] == ("weight", 0.001, 0.01)
    assert kinds[id(m.bn.weight)] == ("bn", 0.0, 0.01) and kinds[id(m.bn.bias)] == ("bias", 0.0, 0.01)
    assert kinds[id(m.head.cv3.bias)] == ("bias", 0.0, 0.01)
    assert id(m.frozen.weight) not in kinds and len(kinds) == 7


def test_musgd_groups_muon_for_matrices_and_3x_lr_for_the_class_head():
    m = _Tiny()
    kinds = _kinds(param_groups(m, lr=0.01, weight_decay=0.001, muon=True))
    assert kinds[id(m.conv.weight)] == ("muon", 0.001, 0.01)
    assert kinds[id(m.head.cv2.weight)] == ("muon", 0.001, 0.01)
    assert kinds[id(m.head.cv3.weight)] == ("muon", 0.001, pytest.approx(0.03))
    assert kinds[id(m.head.cv3.bias)] == ("bias", 0.0, pytest.approx(0.03))
    assert kinds[id(m.bn.weight)] == ("bn", 0.0, 0.01)


def test_weight_decay_is_scaled_to_the_nominal_batch():
    assert scaled_weight_decay(5e-4, 16, 64) == pytest.approx(5e-4)  # 16 * 4 / 64
    assert scaled_weight_decay(5e-4, 48, 64) == pytest.approx(5e-4 * 48 / 64)  # accumulate round(64/48) = 1
    assert scaled_weight_decay(5e-4, 128, 64) == pytest.approx(1e-3)
    assert nominal_accumulate(64, 16) == 4 and nominal_accumulate(64, 16, total_iterations=3) == 3


def test_auto_picks_adamw_with_the_fitted_lr_for_short_runs(caplog):
    cfg = make_config(TrainConfig, data="d.yaml", batch=16)
    with caplog.at_level(logging.INFO, logger="yolokit.train.optim"):
        choice = choose_optimizer(cfg, num_images=1000, nc=3)  # ceil(1000 / 64) * 100 = 1600 iterations
    assert choice == OptimizerChoice("AdamW", 0.001429, 0.9, 0.0)  # round(0.002 * 5 / 7, 6); bias warmup from 0
    assert "optimizer=auto chose AdamW(lr=0.001429, momentum=0.9)" in caplog.text


def test_auto_picks_musgd_for_long_runs():
    cfg = make_config(TrainConfig, data="d.yaml")
    assert choose_optimizer(cfg, 10_000, 80) == OptimizerChoice("MuSGD", 0.01, 0.9, 0.0)  # 157 * 100 iterations


def test_auto_honours_the_values_the_user_gave(caplog):
    cfg = make_config(TrainConfig, data="d.yaml", lr0=0.0005, momentum=0.95)
    with caplog.at_level(logging.INFO, logger="yolokit.train.optim"):
        choice = choose_optimizer(cfg, 1000, 3)
    assert choice == OptimizerChoice("AdamW", 0.0005, 0.95, 0.0)
    assert "kept the lr0, momentum you gave" in caplog.text
    given_default = make_config(TrainConfig, lr0=0.01, warmup_bias_lr=0.1)  # defaults, but said explicitly
    assert choose_optimizer(given_default, 1000, 3) == OptimizerChoice("AdamW", 0.01, 0.9, 0.1)


def test_named_optimizers_use_the_settings_as_given():
    cfg = make_config(TrainConfig, optimizer="SGD")
    assert choose_optimizer(cfg, 10, 3) == OptimizerChoice("SGD", 0.01, 0.937, 0.1)


@pytest.mark.parametrize(("name", "cls"), [("SGD", torch.optim.SGD), ("Adam", torch.optim.Adam),
                                           ("AdamW", torch.optim.AdamW), ("MuSGD", MuSGD)])
def test_build_optimizer(name, cls):
    opt = build_optimizer(_Tiny(), OptimizerChoice(name, 0.01, 0.9, 0.1), weight_decay=1e-3)
    assert isinstance(opt, cls)
    group = opt.param_groups[0]
    if name == "SGD":
        assert group["nesterov"] and group["momentum"] == 0.9
    if name.startswith("Adam"):
        assert group["betas"] == (0.9, 0.999)
    assert {g["kind"] for g in opt.param_groups} >= {"bn", "bias"}
    assert all(g["initial_lr"] == g["lr"] for g in opt.param_groups)
