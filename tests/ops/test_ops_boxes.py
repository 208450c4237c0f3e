"""Box conversions, IoU, clipping and the letterbox scale-back on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from yolokit.ops.boxes import box_iou, clip_boxes, letterbox_pad, scale_boxes, xywh2xyxy, xyxy2xywh


def test_xywh_xyxy_hand_values_tensor_and_numpy():
    xywh = torch.tensor([[10.0, 20.0, 4.0, 6.0], [0.0, 0.0, 2.0, 2.0]])
    expected = torch.tensor([[8.0, 17.0, 12.0, 23.0], [-1.0, -1.0, 1.0, 1.0]])
    assert torch.equal(xywh2xyxy(xywh), expected)
    assert torch.equal(xyxy2xywh(expected), xywh)
    out = xywh2xyxy(xywh.numpy())
    assert isinstance(out, np.ndarray) and np.array_equal(out, expected.numpy())
    assert torch.equal(xywh, torch.tensor([[10.0, 20.0, 4.0, 6.0], [0.0, 0.0, 2.0, 2.0]]))  # input untouched


def test_conversions_keep_leading_dims_and_reject_bad_shapes():
    boxes = torch.rand(2, 5, 4)
    assert torch.allclose(xyxy2xywh(xywh2xyxy(boxes)), boxes, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        xywh2xyxy(torch.zeros(3, 5))
    with pytest.raises(TypeError):
        xyxy2xywh([[0, 0, 1, 1]])


def test_box_iou_hand_values():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    iou = box_iou(a, b)
    expected = torch.tensor([[1 / 7, 1.0, 0.0], [0.0, 0.25, 0.0]])
    assert iou.shape == (2, 3)
    assert torch.allclose(iou, expected)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        box_iou(torch.zeros(4), b)


def test_clip_boxes_copies_and_clips_only_coordinates():
    boxes = torch.tensor([[-5.0, -1.0, 50.0, 12.0, 0.9, 2.0]])
    clipped = clip_boxes(boxes, (10, 40))
    assert torch.equal(clipped, torch.tensor([[0.0, 0.0, 40.0, 10.0, 0.9, 2.0]]))
    assert boxes[0, 0] == -5.0
    assert np.array_equal(clip_boxes(boxes.numpy(), (10, 40)), clipped.numpy())


@pytest.mark.parametrize(
    "from_hw, to_hw, gain, pad",
    [
        ((480, 640), (810, 1080), 640 / 1080, (0, 0)),  # 1080x810 with auto -> 640x480, no pad
        ((640, 640), (810, 1080), 640 / 1080, (0, 80)),  # square: 160 rows of pad split 80/80
        ((32, 640), (33, 2000), 0.32, (0, 10)),  # 33x2000 auto: 11 rows + 21 pad -> top round(10.5 - 0.1) = 10
        ((640, 640), (1, 1), 640.0, (0, 0)),
    ],
)
def test_letterbox_pad_hand_values(from_hw, to_hw, gain, pad):
    got_gain, got_pad = letterbox_pad(from_hw, to_hw)
    assert got_gain == pytest.approx(gain)
    assert got_pad == pad


def test_scale_boxes_inverts_the_letterbox_mapping():
    # 33x2000 image letterboxed to 32x640 (auto): x' = 0.32 x, y' = 0.32 y + 10
    original = torch.tensor([[0.0, 0.0, 2000.0, 33.0, 0.5, 1.0], [100.0, 3.0, 1500.0, 30.0, 0.7, 0.0]])
    boxed = original.clone()
    boxed[:, :4] *= 0.32
    boxed[:, [1, 3]] += 10
    back = scale_boxes(boxed, (32, 640), (33, 2000))
    assert torch.allclose(back, original, atol=1e-4)
    assert torch.equal(back[:, 4:], original[:, 4:])
    same = scale_boxes(boxed, (32, 640), (33, 2000), ratio_pad=((0.32, 0.32), (0, 10)))
    assert torch.allclose(same, back)


def test_scale_boxes_clips_and_supports_no_padding():
    boxes = np.array([[-20.0, 0.0, 700.0, 100.0]], dtype=np.float32)
    out = scale_boxes(boxes, (640, 640), (320, 320))  # gain 2, no pad
    assert np.allclose(out, [[0.0, 0.0, 320.0, 50.0]])
    out = scale_boxes(torch.tensor([[10.0, 10.0, 20.0, 20.0]]), (100, 100), (50, 100), padding=False)
    assert torch.allclose(out, torch.tensor([[10.0, 10.0, 20.0, 20.0]]))  # gain 1, pad of 25 rows not removed


def test_scale_boxes_per_axis_gains():
    # a 90x240 image resized to 48x128 (gain_y 48/90, gain_x 128/240) then padded by (16, 24): x' = x*g_x + 16
    gain_y, gain_x = 48 / 90, 128 / 240
    original = torch.tensor([[12.0, 9.0, 180.0, 81.0, 0.9, 2.0]])
    boxed = original.clone()
    boxed[:, [0, 2]] = boxed[:, [0, 2]] * gain_x + 16
    boxed[:, [1, 3]] = boxed[:, [1, 3]] * gain_y + 24
    back = scale_boxes(boxed, None, (90, 240), ratio_pad=((gain_y, gain_x), (16, 24)))
    assert torch.allclose(back, original, atol=1e-4)
    with pytest.raises(ValueError, match="from_shape_hw"):
        scale_boxes(boxed, None, (90, 240))
