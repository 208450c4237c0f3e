import math

import pytest
import torch

from yolokit.ops.boxes import box_iou
from yolokit.ops.iou import bbox_iou

# [0, 0, 2, 2] (2x2) and [1, 0, 4, 2] (3x2): intersection 1x2 = 2, union 4 + 6 - 2 = 8, enclosing box 4x2,
# centres (1, 1) and (2.5, 1).
B1 = torch.tensor([0.0, 0.0, 2.0, 2.0])
B2 = torch.tensor([1.0, 0.0, 4.0, 2.0])
IOU = 2 / 8
GIOU = IOU - (8 - 8) / 8  # the enclosing box (area 8) equals the union
DIOU = IOU - 1.5**2 / (4**2 + 2**2)
V = 4 / math.pi**2 * (math.atan(3 / 2) - math.atan(2 / 2)) ** 2
CIOU = DIOU - V / (V - IOU + 1) * V


@pytest.mark.parametrize(("kind", "expected"), [("iou", IOU), ("giou", GIOU), ("diou", DIOU), ("ciou", CIOU)])
def test_hand_computed_pair(kind, expected):
    assert bbox_iou(B1, B2, kind=kind).item() == pytest.approx(expected, abs=1e-6)
    assert bbox_iou(B2, B1, kind=kind).item() == pytest.approx(expected, abs=1e-6)  # symmetric


def test_ciou_hand_value_and_aspect_penalty():
    assert CIOU == pytest.approx(0.137174, abs=1e-6)
    same_aspect = bbox_iou(torch.tensor([0.0, 0, 2, 2]), torch.tensor([1.0, 0, 3, 2]), kind="ciou")
    assert same_aspect.item() == pytest.approx(1 / 3 - 1 / 13, abs=1e-6)  # v = 0: CIoU = DIoU


def test_disjoint_boxes_giou_and_diou_are_negative():
    a, b = torch.tensor([0.0, 0, 1, 1]), torch.tensor([2.0, 0, 3, 1])
    assert bbox_iou(a, b).item() == 0
    assert bbox_iou(a, b, kind="giou").item() == pytest.approx(-1 / 3, abs=1e-6)  # 0 - (3 - 2) / 3
    assert bbox_iou(a, b, kind="diou").item() == pytest.approx(-4 / 10, abs=1e-6)  # rho^2 = 4, c^2 = 9 + 1


def test_xywh_and_broadcasting_match_the_pairwise_iou():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(5, 2, generator=g) * 10
    boxes = torch.cat((xy, xy + 1 + torch.rand(5, 2, generator=g) * 5), 1)
    other = boxes[:3] + 0.7
    pairwise = bbox_iou(boxes[:, None], other[None], eps=0.0)  # (5, 3)
    torch.testing.assert_close(pairwise, box_iou(boxes, other))
    cxcywh = torch.cat(((boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]), 1)
    torch.testing.assert_close(bbox_iou(cxcywh, cxcywh.flip(0), xywh=True, kind="ciou"),
                               bbox_iou(boxes, boxes.flip(0), kind="ciou"))


def test_identical_boxes_give_one_and_ciou_alpha_has_no_gradient():
    box = torch.tensor([[1.0, 2.0, 5.0, 4.0]], requires_grad=True)
    for kind in ("iou", "giou", "diou", "ciou"):
        assert bbox_iou(box, box.detach(), kind=kind).item() == pytest.approx(1.0, abs=1e-6)
    pred = torch.tensor([0.5, 0.0, 2.0, 3.0], requires_grad=True)
    bbox_iou(pred, B2, kind="ciou").backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_bad_input_raises():
    with pytest.raises(ValueError, match="kind"):
        bbox_iou(B1, B2, kind="eiou")
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        bbox_iou(B1[:3], B2)
