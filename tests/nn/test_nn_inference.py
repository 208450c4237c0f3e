"""inference_copy: the one way backends and export make an eval copy of a model."""

from __future__ import annotations

from pathlib import Path

import torch

from conftest import randomise_batchnorm
from yolokit.models.builder import build_model
from yolokit.nn.inference import inference_copy

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _tiny_model() -> torch.nn.Module:
    model = build_model(FIXTURES / "yolo26-tiny.yaml")
    randomise_batchnorm(model)
    return model.train()


def test_copy_is_fused_eval_frozen_and_leaves_the_model_alone():
    model = _tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prepared = inference_copy(model)
    assert prepared is not model and not prepared.training
    assert not any(p.requires_grad for p in prepared.parameters())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in prepared.modules())  # fused
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = model.eval()(x), prepared(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_dtype_layout_and_in_place_mode():
    model = _tiny_model()
    half = inference_copy(model, dtype=torch.float16, fuse=False, memory_format=torch.channels_last)
    conv = half.model[0].conv
    assert conv.weight.dtype == torch.float16 and conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert half.model[0].bn is not None  # fuse=False keeps the BatchNorm
    same = inference_copy(model, copy=False)
    assert same is model and model.model[0].bn is None
