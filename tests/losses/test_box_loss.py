import math

import pytest
import torch

from yolokit.losses.box import BboxLoss, bbox2dist, distribution_focal_loss


def _ce(logits, k):
    """Cross-entropy of a python list of logits towards bin k."""
    return math.log(sum(math.exp(v) for v in logits)) - logits[k]


def _ciou(b1, b2):
    """CIoU of two xyxy boxes, written out from the definition."""
    iw = max(min(b1[2], b2[2]) - max(b1[0], b2[0]), 0)
    ih = max(min(b1[3], b2[3]) - max(b1[1], b2[1]), 0)
    w1, h1, w2, h2 = b1[2] - b1[0], b1[3] - b1[1], b2[2] - b2[0], b2[3] - b2[1]
    iou = iw * ih / (w1 * h1 + w2 * h2 - iw * ih)
    c2 = (max(b1[2], b2[2]) - min(b1[0], b2[0])) ** 2 + (max(b1[3], b2[3]) - min(b1[1], b2[1])) ** 2
    rho2 = ((b1[0] + b1[2] - b2[0] - b2[2]) ** 2 + (b1[1] + b1[3] - b2[1] - b2[3]) ** 2) / 4
    v = 4 / math.pi**2 * (math.atan(w2 / h2) - math.atan(w1 / h1)) ** 2
    return iou - rho2 / c2 - v * v / (v - iou + 1)


def test_bbox2dist_clamps_only_with_max_dist():
    anchor = torch.tensor([[1.5, 0.5]])
    box = torch.tensor([[0.0, 1.0, 9.0, 2.0]])  # the anchor is above the box: negative top distance
    assert bbox2dist(anchor, box).tolist() == [[1.5, -0.5, 7.5, 1.5]]
    assert bbox2dist(anchor, box, max_dist=3)[0].tolist() == pytest.approx([1.5, 0.0, 2.99, 1.5])


def test_dfl_interpolates_the_two_neighbour_bins():
    logits = [[0.3, -1.0, 2.0, 0.5], [1.0, 0.0, 0.0, -2.0], [-0.5, 0.25, 1.5, 1.0], [0.0, 0.0, 0.0, 0.0]]
    target = [1.25, 0.0, 2.5, 2.99]
    expected = 0.0
    for side, t in zip(logits, target, strict=True):
        left = math.floor(t)
        expected += (left + 1 - t) * _ce(side, left) + (t - left) * _ce(side, left + 1)
    got = distribution_focal_loss(torch.tensor([logits]), torch.tensor([target]))
    assert got.shape == (1,) and got.item() == pytest.approx(expected / 4, rel=1e-6)


def test_bbox_loss_ciou_and_dfl_terms():
    reg_max = 4
    anchors = torch.tensor([[0.5, 0.5], [1.5, 0.5]])  # grid units
    pred_bboxes = torch.tensor([[[0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]]])
    target_bboxes = torch.tensor([[[1.0, 0.0, 4.0, 2.0], [0.0, 0.0, 1.0, 1.0]]])
    target_scores = torch.tensor([[[0.2, 0.4], [0.0, 0.0]]])  # anchor 0: weight 0.6
    fg = torch.tensor([[True, False]])
    g = torch.Generator().manual_seed(0)
    pred_dist = torch.randn(1, 2, 4 * reg_max, generator=g)
    loss = BboxLoss(reg_max)
    iou_loss, dfl = loss(pred_dist, pred_bboxes, anchors, target_bboxes, target_scores, torch.tensor(2.0), fg,
                         torch.tensor([64.0, 64.0]), torch.full((2, 1), 8.0))
    assert iou_loss.item() == pytest.approx((1 - _ciou([0, 0, 2, 2], [1, 0, 4, 2])) * 0.6 / 2, rel=1e-5)
    target = [0.5 - 1.0, 0.5 - 0.0, 4.0 - 0.5, 2.0 - 0.5]  # ltrb -> clamped to [0, 2.99]
    target = [min(max(t, 0.0), 2.99) for t in target]
    sides = pred_dist[0, 0].view(4, reg_max).tolist()
    per_side = [
        (math.floor(t) + 1 - t) * _ce(s, math.floor(t)) + (t - math.floor(t)) * _ce(s, math.floor(t) + 1)
        for s, t in zip(sides, target, strict=True)
    ]
    assert dfl.item() == pytest.approx(sum(per_side) / 4 * 0.6 / 2, rel=1e-5)


def test_bbox_loss_l1_term_is_normalised_by_image_size():
    anchors = torch.tensor([[1.5, 0.5]])
    target_bboxes = torch.tensor([[[0.0, 0.0, 4.0, 2.0]]])  # ltrb from the anchor: (1.5, 0.5, 2.5, 1.5)
    pred_dist = torch.tensor([[[1.0, 1.0, 3.0, 1.0]]], requires_grad=True)  # each side 0.5 grid units off
    pred_bboxes = torch.tensor([[[0.5, -0.5, 4.5, 1.5]]])
    weight, tss = 0.8, 1.6
    iou_loss, l1 = BboxLoss(1)(
        pred_dist, pred_bboxes, anchors, target_bboxes, torch.tensor([[[weight]]]), torch.tensor(tss),
        torch.tensor([[True]]), torch.tensor([64.0, 128.0]), torch.tensor([[8.0]]),
    )
    # 0.5 grid units * stride 8 = 4 px: 4 / 128 (width) for l, r and 4 / 64 (height) for t, b
    expected = (4 / 128 + 4 / 64 + 4 / 128 + 4 / 64) / 4 * weight / tss
    assert l1.item() == pytest.approx(expected, rel=1e-6)
    assert iou_loss.item() == pytest.approx((1 - _ciou([0.5, -0.5, 4.5, 1.5], [0, 0, 4, 2])) * weight / tss, rel=1e-5)
    l1.backward()
    assert pred_dist.grad.abs().sum() > 0


def test_bbox_loss_rejects_bad_reg_max():
    with pytest.raises(ValueError, match="reg_max"):
        BboxLoss(0)
