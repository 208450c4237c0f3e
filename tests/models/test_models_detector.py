import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import randomise_batchnorm
from yolokit.errors import ConfigError
from yolokit.models.builder import build_model

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _tiny(family: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(FIXTURES / f"{family}-tiny.yaml")


@pytest.mark.parametrize("family", ["yolov8", "yolo11", "yolo26"])
def test_eval_output_shape_and_probabilities(family):
    model = _tiny(family).eval()
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        out = model(x)
        raw = model.head.forward_raw(model.head_inputs(x))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 7, 8 * 12 + 4 * 6 + 2 * 3)
    torch.testing.assert_close(out[:, 4:], raw["scores"].sigmoid())


@pytest.mark.parametrize(("family", "reg_max"), [("yolov8", 16), ("yolo26", 1)])
def test_boxes_are_decoded_to_input_pixels(family, reg_max):
    model = _tiny(family).eval()
    with torch.no_grad():
        for seq in model.head.cv2:  # constant box output: DFL uniform -> 7.5, reg_max 1 -> the bias 2.0
            seq[-1].weight.zero_()
            seq[-1].bias.fill_(0.0 if reg_max > 1 else 2.0)
        out = model(torch.rand(1, 3, 64, 64))
    dist = 7.5 if reg_max > 1 else 2.0
    # level P3 (stride 8, 8x8 grid): anchor 9 is cell (x=1, y=1); last anchor is P5 cell (1, 1) at stride 32
    assert out[0, :4, 9].tolist() == pytest.approx([12.0, 12.0, 16 * dist, 16 * dist])
    assert out[0, :4, -1].tolist() == pytest.approx([48.0, 48.0, 64 * dist, 64 * dist])


def test_train_outputs_v8():
    model = _tiny("yolov8").train()
    out = model(torch.rand(2, 3, 64, 64))
    assert set(out) == {"boxes", "scores", "feats"}
    assert out["boxes"].shape == (2, 64, 84) and out["scores"].shape == (2, 3, 84)
    assert [tuple(f.shape[-2:]) for f in out["feats"]] == [(8, 8), (4, 4), (2, 2)]


def test_train_outputs_yolo26_and_detached_one2one():
    model = _tiny("yolo26").train()
    out = model(torch.rand(2, 3, 64, 64))
    assert set(out) == {"one2many", "one2one"}
    for branch in out.values():
        assert branch["boxes"].shape == (2, 4, 84) and branch["scores"].shape == (2, 3, 84)
    out["one2one"]["scores"].sum().backward()
    assert model.model[0].conv.weight.grad is None  # one2one features are detached from the backbone
    assert model.head.cv3[0][2].weight.grad is None
    assert model.head.one2one_cv3[0][2].weight.grad.abs().sum() > 0


def test_nms_free_output_sorted_with_integral_classes():
    model = _tiny("yolo26").eval()
    x = torch.rand(2, 3, 160, 160)
    with torch.no_grad():
        default = model(x)
        model.set_nms_free(True)
        out = model(x)
    assert default.shape == (2, 7, 525)
    assert out.shape == (2, 300, 6)
    scores = out[..., 4]
    assert torch.all(scores[:, :-1] >= scores[:, 1:])
    assert torch.equal(out[..., 5], out[..., 5].round()) and out[..., 5].min() >= 0 and out[..., 5].max() <= 2
    with torch.no_grad():
        decoded = model.head.decode(model.head.forward_raw(model.head_inputs(x), one2one=True), xywh=False)
    best = decoded[:, 4:].amax(1).max(1).values
    torch.testing.assert_close(scores[:, 0], best)  # the top row is the best (anchor, class) score
    model.set_nms_free(False)
    assert model(x).shape == (2, 7, 525)


def test_nms_free_needs_an_end2end_model():
    model = _tiny("yolov8")
    model.set_nms_free(False)
    with pytest.raises(ConfigError, match="needs an end-to-end model"):
        model.set_nms_free(True)


@pytest.mark.parametrize("family", ["yolov8", "yolo11", "yolo26"])
def test_fuse_preserves_outputs(family):
    model = _tiny(family)
    randomise_batchnorm(model, seed=1, spread=0.25)
    model = model.double().eval()
    x = torch.rand(2, 3, 96, 64, dtype=torch.float64)
    with torch.no_grad():
        before = model(x)
        raw_before = model.head.decode(model.head.forward_raw(model.head_inputs(x), one2one=True), xywh=False) \
            if model.end2end else None
        fused = copy.deepcopy(model).fuse()
        assert fused.is_fused() and not model.is_fused()
        assert not any(".bn." in k for k in fused.state_dict())
        assert (fused(x) - before).abs().max().item() <= 1e-5
        fused.fuse()  # idempotent
        assert (fused(x) - before).abs().max().item() <= 1e-5
        if model.end2end:  # the one-to-one branch survives fusion
            raw_after = fused.head.decode(fused.head.forward_raw(fused.head_inputs(x), one2one=True), xywh=False)
            assert (raw_after - raw_before).abs().max().item() <= 1e-5
            fused.set_nms_free(True)
            model.set_nms_free(True)
            torch.testing.assert_close(fused(x)[..., 4], model(x)[..., 4], atol=1e-5, rtol=0)


def test_fuse_fp32_within_float_noise():
    model = _tiny("yolo11")
    randomise_batchnorm(model, seed=1, spread=0.25)
    model.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        after = copy.deepcopy(model).fuse()(x)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-4)


def test_deepcopy_and_mode_round_trip():
    model = _tiny("yolo26").eval()
    clone = copy.deepcopy(model)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(clone(x), model(x))
    assert clone.stride.tolist() == [8.0, 16.0, 32.0] and clone.spec == model.spec


def test_eval_with_autograd_after_inference_mode():
    model = _tiny("yolo26").eval()
    with torch.inference_mode():
        model(torch.rand(1, 3, 64, 64))
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    model(x)[:, :4].sum().backward()  # cached inference-mode anchors must not be reused here
    assert x.grad is not None and x.grad.abs().sum() > 0
