"""Hand-computed assignments, in the spirit of detectron2's matcher tests."""

import math

import pytest
import torch

from yolokit.losses.assigner import TaskAlignedAssigner
from yolokit.ops.anchors import make_anchors


def _anchors(size: int = 32, strides=(8,)) -> torch.Tensor:
    """Anchor centres in pixels of a ``size`` x ``size`` input: ``(A, 2)``."""
    feats = [torch.zeros(1, 1, size // s, size // s) for s in strides]
    points, stride = make_anchors(feats, list(strides), 0.5)
    return points * stride


def _gt(boxes, labels):
    boxes = torch.tensor(boxes, dtype=torch.float32).view(1, -1, 4)
    labels = torch.tensor(labels, dtype=torch.float32).view(1, -1, 1)
    return labels, boxes, torch.ones_like(labels)


def _run(assigner, scores, pred_boxes, anchors, gt):
    return assigner(scores, pred_boxes, anchors, *gt)


def test_no_ground_truth_is_all_background():
    anchors = _anchors()
    a = anchors.shape[0]
    scores, boxes = torch.rand(2, a, 3), torch.rand(2, a, 4) * 32
    assigner = TaskAlignedAssigner(num_classes=3)
    for m in (0, 2):  # no rows at all, or padding rows only
        out = assigner(scores, boxes, anchors, torch.zeros(2, m, 1), torch.rand(2, m, 4) * 32, torch.zeros(2, m, 1))
        assert not out.fg_mask.any() and out.fg_mask.shape == (2, a)
        assert (out.target_labels == 3).all() and (out.target_gt_idx == -1).all()
        assert out.target_scores.shape == (2, a, 3) and not out.target_scores.any()
        assert out.target_bboxes.shape == (2, a, 4) and not out.target_bboxes.any()


def test_docstring_example_scores_and_topk2():
    anchors = _anchors()  # 4x4 grid: the candidates of [0, 0, 16, 16] are anchors 0, 1, 4, 5
    gt = _gt([[0, 0, 16, 16]], [1])
    scores = torch.zeros(1, 16, 2)
    scores[0, [0, 1, 4, 5], 1] = torch.tensor([0.2, 0.4, 0.6, 0.8])
    pred = gt[1].expand(1, 16, 4).clone()  # every predicted box equals the GT: CIoU 1
    out = _run(TaskAlignedAssigner(topk=10, num_classes=2), scores, pred, anchors, gt)
    assert out.fg_mask[0].nonzero().view(-1).tolist() == [0, 1, 4, 5]
    expected = [math.sqrt(s / 0.8) for s in (0.2, 0.4, 0.6, 0.8)]  # t / max_t * max_u with t = s^0.5
    torch.testing.assert_close(out.target_scores[0, [0, 1, 4, 5], 1], torch.tensor(expected))
    assert not out.target_scores[..., 0].any() and out.target_labels[0, [0, 1, 4, 5]].tolist() == [1] * 4
    assert (out.target_labels[0, [2, 3, 6]] == 2).all()  # background label = num_classes
    torch.testing.assert_close(out.target_bboxes[0, 5], gt[1][0, 0])
    one = _run(TaskAlignedAssigner(topk=10, num_classes=2, topk2=1), scores, pred, anchors, gt)
    assert one.fg_mask[0].nonzero().view(-1).tolist() == [5]
    assert one.target_scores[0, 5, 1].item() == pytest.approx(1.0)  # the single positive gets its CIoU, 1


def test_box_covering_every_anchor_keeps_topk_best_aligned():
    anchors = _anchors(32, (8, 16, 32))  # 16 + 4 + 1 = 21 anchors
    a = anchors.shape[0]
    gt = _gt([[0, 0, 32, 32]], [0])
    scores = torch.linspace(0.05, 0.95, a)[torch.randperm(a, generator=torch.Generator().manual_seed(0))]
    scores = scores.view(1, a, 1)
    pred = gt[1].expand(1, a, 4).clone()
    out = _run(TaskAlignedAssigner(topk=10, num_classes=1), scores, pred, anchors, gt)
    best = scores[0, :, 0].topk(10).indices.sort().values
    assert out.fg_mask[0].nonzero().view(-1).tolist() == best.tolist()
    torch.testing.assert_close(out.target_scores[0, best, 0], (scores[0, best, 0] / scores.max()).sqrt())
    assert (out.target_gt_idx[0, best] == 0).all() and out.fg_mask.sum() == 10


def test_two_boxes_competing_for_one_anchor_highest_iou_wins():
    anchors = _anchors()  # anchor 5 is at (12, 12)
    gt = _gt([[0, 0, 16, 16], [8, 8, 24, 24]], [0, 1])  # both contain anchor 5 (and only GT 2 contains 6, 9, 10)
    scores = torch.full((1, 16, 2), 0.5)
    pred = torch.tensor([[0.0, 0, 16, 16]]).repeat(16, 1)[None]  # predicted boxes on GT 1 ...
    pred[0, 5] = torch.tensor([9.0, 9, 24, 24])  # ... except anchor 5, mostly on GT 2
    out = _run(TaskAlignedAssigner(topk=10, num_classes=2), scores, pred, anchors, gt)
    assert out.target_gt_idx[0, 5].item() == 1 and out.target_labels[0, 5].item() == 1
    torch.testing.assert_close(out.target_bboxes[0, 5], gt[1][0, 1])
    assert out.target_gt_idx[0, [0, 1, 4]].tolist() == [0, 0, 0]  # GT 1 keeps its other anchors
    assert out.target_scores[0, 5, 0].item() == 0 and out.target_scores[0, 5, 1].item() > 0
    pred[0, 5] = torch.tensor([1.0, 1, 16, 16])  # now anchor 5 overlaps GT 1 more
    out = _run(TaskAlignedAssigner(topk=10, num_classes=2), scores, pred, anchors, gt)
    assert out.target_gt_idx[0, 5].item() == 0 and out.target_labels[0, 5].item() == 0


def test_tiny_box_gets_anchors_only_with_stal():
    anchors = _anchors()  # anchors at 4, 12, 20, 28
    gt = _gt([[13.0, 13.0, 19.0, 19.0]], [0])  # 6x6 px between anchors: contains no anchor centre
    scores, pred = torch.full((1, 16, 1), 0.5), gt[1].expand(1, 16, 4).clone()
    plain = _run(TaskAlignedAssigner(num_classes=1), scores, pred, anchors, gt)
    assert not plain.fg_mask.any()
    stal = _run(TaskAlignedAssigner(num_classes=1, stal_size=16), scores, pred, anchors, gt)
    # enlarged to 16x16 around (16, 16): [8, 8, 24, 24] contains the anchors at (12|20, 12|20)
    assert stal.fg_mask[0].nonzero().view(-1).tolist() == [5, 6, 9, 10]
    torch.testing.assert_close(stal.target_bboxes[0, 5], gt[1][0, 0])  # the target stays the real box
    wide = _gt([[2.0, 2.0, 22.0, 10.0]], [0])  # 20x8: x contains 4, 12, 20; y only 4
    pred = wide[1].expand(1, 16, 4)
    out = _run(TaskAlignedAssigner(num_classes=1), scores, pred, anchors, wide)
    assert out.fg_mask[0].nonzero().view(-1).tolist() == [0, 1, 2]
    out = _run(TaskAlignedAssigner(num_classes=1, stal_size=16), scores, pred, anchors, wide)
    assert out.fg_mask[0].nonzero().view(-1).tolist() == [0, 1, 2, 4, 5, 6]  # only the height grows: y in (-2, 14)


def test_topk2_keeps_one_anchor_per_gt():
    anchors = _anchors()
    gt = _gt([[0, 0, 16, 16], [16, 16, 32, 32]], [0, 0])
    g = torch.Generator().manual_seed(1)
    scores = torch.rand(1, 16, 1, generator=g) * 0.8 + 0.1
    pred = torch.where(anchors[:, :1] < 16, gt[1][0, 0], gt[1][0, 1])[None]  # exact boxes
    out = _run(TaskAlignedAssigner(topk=7, num_classes=1, topk2=1), scores, pred, anchors, gt)
    first, second = [0, 1, 4, 5], [10, 11, 14, 15]
    expected = [first[int(scores[0, first, 0].argmax())], second[int(scores[0, second, 0].argmax())]]
    assert out.fg_mask[0].nonzero().view(-1).tolist() == sorted(expected)
    torch.testing.assert_close(out.target_scores[0, expected, 0], torch.ones(2))


def test_padding_rows_are_ignored_and_chunking_is_exact():
    anchors = _anchors(64, (8, 16, 32))
    a = anchors.shape[0]
    g = torch.Generator().manual_seed(2)
    xy = torch.rand(5, 6, 2, generator=g) * 48
    gt_boxes = torch.cat((xy, xy + 4 + torch.rand(5, 6, 2, generator=g) * 30), -1)
    gt_labels = torch.randint(0, 3, (5, 6, 1), generator=g).float()
    mask = (torch.rand(5, 6, 1, generator=g) > 0.3).float()
    scores = torch.rand(5, a, 3, generator=g)
    centre = anchors[None] + torch.randn(5, a, 2, generator=g) * 3
    pred = torch.cat((centre - 10, centre + 10), -1)
    whole = TaskAlignedAssigner(num_classes=3, stal_size=16)(scores, pred, anchors, gt_labels, gt_boxes, mask)
    chunked = TaskAlignedAssigner(num_classes=3, stal_size=16, max_pairs=6 * a * 2)  # 2 images per chunk
    for got, want in zip(chunked(scores, pred, anchors, gt_labels, gt_boxes, mask), whole, strict=True):
        torch.testing.assert_close(got, want)
    assert whole.fg_mask.any()
    assigned = whole.target_gt_idx[whole.fg_mask]
    images = whole.fg_mask.nonzero()[:, 0]
    assert mask[images, assigned, 0].all()  # never a padding row
    # a padded row holding a real-looking box changes nothing
    mask2, boxes2 = mask.clone(), gt_boxes.clone()
    mask2[0, -1], boxes2[0, -1] = 0, torch.tensor([0.0, 0, 64, 64])
    again = TaskAlignedAssigner(num_classes=3, stal_size=16)(scores, pred, anchors, gt_labels, boxes2, mask2)
    want_mask = mask.clone()
    want_mask[0, -1] = 0
    want = TaskAlignedAssigner(num_classes=3, stal_size=16)(scores, pred, anchors, gt_labels, gt_boxes, want_mask)
    torch.testing.assert_close(again.target_scores, want.target_scores)
    assert torch.equal(again.fg_mask, want.fg_mask)


def test_anchor_on_the_border_is_not_inside_and_bad_arguments_raise():
    anchors = _anchors()
    gt = _gt([[4.0, 4.0, 12.0, 12.0]], [0])  # anchors (4, 4) and (12, 12) lie on the border
    out = _run(TaskAlignedAssigner(num_classes=1), torch.full((1, 16, 1), 0.5), gt[1].expand(1, 16, 4), anchors, gt)
    assert not out.fg_mask.any()
    with pytest.raises(ValueError, match="topk"):
        TaskAlignedAssigner(topk=0)
    with pytest.raises(ValueError, match="num_classes"):
        TaskAlignedAssigner(num_classes=0)


def test_shared_anchor_goes_to_the_containing_gt_it_overlaps_most_even_unpicked():
    anchors = _anchors()  # anchor 5 at (12, 12), anchor 15 at (28, 28)
    gt = _gt([[0, 0, 16, 16], [8, 8, 24, 24], [0, 0, 32, 32]], [0, 0, 1])
    scores = torch.full((1, 16, 2), 0.5)
    pred = torch.tensor([30.0, 0, 32, 2]).repeat(1, 16, 1)  # a far corner box: CIoU <= 0 with every GT
    pred[0, 5] = torch.tensor([2.0, 2, 30, 30])  # CIoU 0.232-, 0.327, 0.766 with the three GTs
    pred[0, 15] = gt[1][0, 2]  # exact on GT 3: GT 3's top-1 is anchor 15, not 5
    out = _run(TaskAlignedAssigner(topk=1, num_classes=2), scores, pred, anchors, gt)
    # GTs 1 and 2 both pick anchor 5 (their only non-zero alignment); it goes to GT 3, which did not pick it
    assert out.fg_mask[0].nonzero().view(-1).tolist() == [5, 15]
    assert out.target_gt_idx[0, [5, 15]].tolist() == [2, 2] and out.target_labels[0, 5].item() == 1
    u = 28 * 28 / 32**2  # concentric, same aspect: CIoU = IoU
    assert out.target_scores[0, 5, 1].item() == pytest.approx(u**6, rel=1e-4)  # t * max_u / max_t, same score
    assert out.target_scores[0, 15, 1].item() == pytest.approx(1.0)
