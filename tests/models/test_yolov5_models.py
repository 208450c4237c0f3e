"""YOLOv5 blocks and networks: known answers for the blocks and the head's decode, the original's parameter counts,
spec errors, activations and anchor order."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from yolokit.errors import SpecError
from yolokit.models.builder import build_model
from yolokit.models.yolov5 import inference_defaults
from yolokit.nn.yolov5 import SPP, SPPF5, AnchorDetect, Focus, make_activation

TINY = {"nc": 2, "depth_multiple": 1.0, "width_multiple": 1.0, "anchors": [[8, 8, 16, 16], [24, 24, 32, 32]],
        "backbone": [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [8, 3, 2]],
                     [-1, 1, "Conv", [8, 3, 2]]],
        "head": [[[2, 3], 1, "Detect", ["nc", "anchors"]]]}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_focus_puts_the_four_pixel_phases_on_channels_in_the_original_order() -> None:
    focus = Focus(1, 8)
    focus.conv = nn.Identity()
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # (1, 1, 2, 2): a b / c d
    assert focus(x).flatten().tolist() == [1.0, 3.0, 2.0, 4.0]  # (even row, even col), (odd, even), (even, odd), ...


def test_sppf_equals_spp_with_kernels_5_9_13() -> None:
    torch.manual_seed(0)
    spp, sppf = SPP(8, 8, (5, 9, 13)), SPPF5(8, 8, 5)
    sppf.load_state_dict(spp.state_dict())
    x = torch.randn(1, 8, 16, 16)
    torch.testing.assert_close(sppf.eval()(x), spp.eval()(x))


def test_head_decode_on_zero_logits() -> None:
    """sigmoid(0) = 0.5: centre = (cell + 0.5) * stride, size = anchor, obj = cls = 0.5, score 0.25."""
    head = AnchorDetect(1, [[10, 20]], [4])
    head.stride = torch.tensor([8.0])
    head.anchors /= 8
    nn.init.zeros_(head.m[0].weight)
    nn.init.zeros_(head.m[0].bias)
    head.eval()
    out = head([torch.zeros(1, 4, 2, 3)])  # (1, 4 + 1, 6): rows y, then x
    assert out.shape == (1, 5, 6)
    torch.testing.assert_close(out[0, :, 4], torch.tensor([12.0, 12.0, 10.0, 20.0, 0.25]))  # row 1, column 1
    raw = head.decode_v5(head.forward_raw([torch.zeros(1, 4, 2, 3)]))  # the original's (B, A, 5 + nc)
    torch.testing.assert_close(raw[0, 4], torch.tensor([12.0, 12.0, 10.0, 20.0, 0.5, 0.5]))


def test_train_output_is_per_level_raw_maps_and_eval_decodes_them() -> None:
    model = build_model(TINY)
    x = torch.rand(2, 3, 64, 96)
    assert [tuple(p.shape) for p in model.train()(x)] == [(2, 2, 8, 12, 7), (2, 2, 4, 6, 7)]
    with torch.no_grad():
        raw = model.eval().head.forward_raw(model.head_inputs(x))  # what train mode returns, with eval BN
        torch.testing.assert_close(model(x), model.head.decode(raw))
    assert model.stride.tolist() == [8, 16] and model.end2end is False


@pytest.mark.parametrize(("name", "params"), [("yolov5n", 1872157), ("yolov5s", 7235389)])
def test_shipped_spec_has_the_originals_parameter_count(name: str, params: int) -> None:
    model = build_model(f"{name}.yaml")
    assert type(model).__name__ == "YOLOv5Model" and sum(p.numel() for p in model.parameters()) == params
    assert model.head.anchors[0, 0].tolist() == [10 / 8, 13 / 8]  # pixels / stride


def test_prior_biases_and_bn_eps() -> None:
    model = build_model({**TINY, "bn_eps": 1e-4})
    bias = model.head.m[0].bias.view(2, 7)
    default = nn.Conv2d(8, 14, 1).bias.abs().max().item()  # PyTorch's uniform init bound, plus the prior
    assert (bias[:, 4] - torch.log(torch.tensor(8 / (640 / 8) ** 2))).abs().max() <= default
    assert all(m.eps == 1e-4 for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_anchors_against_the_stride_order_are_reversed_in_grid_units() -> None:
    """As the original's check (from v6.0): areas in grid units shrink with the stride -> levels swapped there."""
    model = build_model({**TINY, "anchors": [[64, 64, 96, 96], [8, 8, 16, 16]]})  # grid areas 64..144 vs 0.25..1
    assert model.head.anchors.flatten(1).tolist() == [[0.5, 0.5, 1, 1], [8, 8, 12, 12]]


def test_activation_from_the_spec() -> None:
    model = build_model({**TINY, "activation": "LeakyReLU(0.1)"})
    acts = [m.act for m in model.modules() if hasattr(m, "bn") and hasattr(m, "act")]
    assert acts and all(isinstance(a, nn.LeakyReLU) and a.negative_slope == 0.1 for a in acts)
    assert len({id(a) for a in acts}) == len(acts)  # one instance per Conv unless shared_activation
    shared = make_activation("SiLU", shared=True)
    assert shared() is shared()


@pytest.mark.parametrize(("change", "words"), [
    ({"anchors": 3}, "anchor count"), ({"activation": "GELU"}, "unknown activation"),
    ({"head": [[-1, 1, "C3TR", [8]], [[2, 3], 1, "Detect", ["nc", "anchors"]]]}, "unknown module type 'C3TR'"),
    ({"width_multiple": 0}, "width_multiple"),
])
def test_spec_errors_are_one_line(change: dict, words: str) -> None:
    with pytest.raises(SpecError, match=words) as exc:
        build_model({**TINY, **change})
    assert "\n" not in str(exc.value)


def test_nms_defaults_of_the_original() -> None:
    assert inference_defaults(TINY, "predict") == {"iou": 0.45, "max_det": 1000}
    assert inference_defaults(TINY, "val") == {"iou": 0.6}
    assert inference_defaults({"nc": 80, "scales": {}}, "predict") == {}
