import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch

from yolokit.errors import ConfigError, DatasetError
from yolokit.losses import DetectionLoss, E2EDetectionLoss, build_loss, targets_from_batch


def _head(nc=2, reg_max=1, strides=(8.0,), end2end=False):
    return SimpleNamespace(nc=nc, reg_max=reg_max, stride=torch.tensor(strides), end2end=end2end)


def _bce(x, y):
    p = 1 / (1 + math.exp(-x))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def _ciou(b1, b2):
    iw = max(min(b1[2], b2[2]) - max(b1[0], b2[0]), 0)
    ih = max(min(b1[3], b2[3]) - max(b1[1], b2[1]), 0)
    w1, h1, w2, h2 = b1[2] - b1[0], b1[3] - b1[1], b2[2] - b2[0], b2[3] - b2[1]
    iou = iw * ih / (w1 * h1 + w2 * h2 - iw * ih)
    c2 = (max(b1[2], b2[2]) - min(b1[0], b2[0])) ** 2 + (max(b1[3], b2[3]) - min(b1[1], b2[1])) ** 2
    rho2 = ((b1[0] + b1[2] - b2[0] - b2[2]) ** 2 + (b1[1] + b1[3] - b2[1] - b2[3]) ** 2) / 4
    v = 4 / math.pi**2 * (math.atan(w2 / h2) - math.atan(w1 / h1)) ** 2
    return iou - rho2 / c2 - v * v / (v - iou + 1)


def _batch(cls, boxes, idx):
    return {"cls": torch.tensor(cls, dtype=torch.float32).view(-1, 1),
            "bboxes": torch.tensor(boxes, dtype=torch.float32).view(-1, 4),
            "batch_idx": torch.tensor(idx, dtype=torch.float32)}


def test_targets_from_batch_pads_per_image_in_pixels():
    batch = _batch([2, 0, 1], [[0.5, 0.5, 0.5, 0.25], [0.25, 0.5, 0.5, 1.0], [0.1, 0.1, 0.2, 0.2]], [2, 0, 2])
    labels, boxes, mask = targets_from_batch(batch, 3, torch.tensor([64.0, 128.0]), num_classes=3)  # h=64, w=128
    assert labels.shape == (3, 2, 1) and mask[..., 0].tolist() == [[True, False], [False, False], [True, True]]
    assert labels[2, :, 0].tolist() == [2, 1] and labels[0, 0, 0].item() == 0
    assert boxes[2, 0].tolist() == [32.0, 24.0, 96.0, 40.0]  # cx 64, cy 32, w 64, h 16
    assert boxes[0, 0].tolist() == [0.0, 0.0, 64.0, 64.0]
    empty = targets_from_batch(_batch([], [], []), 2, torch.tensor([64.0, 64.0]), 3)
    assert [t.shape for t in empty] == [(2, 0, 1), (2, 0, 4), (2, 0, 1)]
    with pytest.raises(DatasetError, match=r"class indices must lie in \[0, 3\)"):
        targets_from_batch(_batch([3], [[0.5, 0.5, 0.1, 0.1]], [0]), 1, torch.tensor([64.0, 64.0]), 3)
    with pytest.raises(DatasetError, match="batch_idx"):
        targets_from_batch(_batch([0], [[0.5, 0.5, 0.1, 0.1]], [1]), 1, torch.tensor([64.0, 64.0]), 3)


def test_no_ground_truth_gives_bce_against_zeros_only():
    loss = DetectionLoss(_head(nc=3, reg_max=16, strides=(8.0, 16.0, 32.0)))
    feats = [torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 1, 1)]  # A = 21
    preds = {"boxes": torch.randn(2, 64, 21), "scores": torch.full((2, 3, 21), -1.5), "feats": feats}
    total, items = loss(preds, _batch([], [], []))
    cls = 2 * 21 * 3 * _bce(-1.5, 0.0)  # summed, divided by max(target score sum, 1) = 1
    torch.testing.assert_close(items, torch.tensor([0.0, 0.5 * cls, 0.0]))
    assert total.item() == pytest.approx(items.sum().item() * 2, rel=1e-6)
    assert loss.names == ("box_loss", "cls_loss", "dfl_loss")


def test_hand_computed_single_gt_l1_head():
    """One 4x4 level (stride 8, 32x32 input), one GT [0, 0, 16, 16] of class 0 (candidates: anchors 0, 1, 4, 5)."""
    logit = lambda s: math.log(s / (1 - s))  # noqa: E731
    scores = torch.full((1, 2, 16), -3.0)
    for a, s in zip((0, 1, 4, 5), (0.2, 0.4, 0.6, 0.8), strict=True):
        scores[0, 0, a] = logit(s)
    boxes = torch.ones(1, 4, 16)
    anchors = {0: (0.5, 0.5), 1: (1.5, 0.5), 4: (0.5, 1.5), 5: (1.5, 1.5)}  # grid units
    for a, (x, y) in anchors.items():  # exact ltrb towards [0, 0, 2, 2] (grid units)
        boxes[0, :, a] = torch.tensor([x, y, 2 - x, 2 - y])
    boxes[0, 0, 5] = 1.25  # anchor 5's left side 0.25 grid units (2 px) short: predicted box [2, 0, 16, 16] px
    preds = {"boxes": boxes, "scores": scores, "feats": [torch.zeros(1, 1, 4, 4)]}
    total, items = DetectionLoss(_head(nc=2))(preds, _batch([0], [[0.25, 0.25, 0.5, 0.5]], [0]))

    u5 = _ciou([2, 0, 16, 16], [0, 0, 16, 16])
    probs = dict(zip((0, 1, 4, 5), (0.2, 0.4, 0.6, 0.8), strict=True))
    align = {a: math.sqrt(s) * (u5**6 if a == 5 else 1.0) for a, s in probs.items()}
    target = {a: t * 1.0 / max(align.values()) for a, t in align.items()}  # max CIoU among positives is 1
    tss = sum(target.values())
    cls = sum(_bce(scores[0, c, a].item(), target.get(a, 0.0) if c == 0 else 0.0) for c in (0, 1) for a in range(16))
    box = (1 - u5) * target[5]  # the exact anchors have CIoU 1
    l1 = (2 / 32) / 4 * target[5]  # one side 2 px off, divided by the width 32, averaged over 4 sides
    expected = torch.tensor([7.5 * box / tss, 0.5 * cls / tss, 1.5 * l1 / tss])
    torch.testing.assert_close(items, expected, rtol=1e-5, atol=1e-7)
    assert total.item() == pytest.approx(expected.sum().item(), rel=1e-5)  # batch size 1


def test_dfl_decode_gains_and_build_loss():
    loss = DetectionLoss(_head(reg_max=4), box=1.0, cls=2.0, dfl=3.0)
    logits = torch.full((1, 1, 16), -30.0)
    logits[0, 0, [3, 4 + 1, 8 + 2, 12]] = 30.0  # peaked bins: ltrb (3, 1, 2, 0)
    assert loss.decode(torch.tensor([[5.0, 5.0]]), logits)[0, 0].tolist() == pytest.approx([2.0, 4.0, 7.0, 5.0])
    assert loss.gains == (1.0, 2.0, 3.0)
    built = build_loss(_head(reg_max=1), {"box": 1.0, "lr0": 0.01})  # other keys are ignored
    assert isinstance(built, DetectionLoss) and built.gains == (1.0, 0.5, 1.5) and built.names[2] == "l1_loss"
    assert isinstance(build_loss(_head(end2end=True)), E2EDetectionLoss)
    config = dataclasses.make_dataclass("Config", [("box", float), ("epochs", int)], frozen=True)(2.0, 3)
    assert build_loss(_head(), config).gains == (2.0, 0.5, 1.5)
    with pytest.raises(ConfigError, match="loss gain cls"):
        build_loss(_head(), {"cls": "high"})
    with pytest.raises(ValueError, match="E2EDetectionLoss"):
        loss({"one2many": {}, "one2one": {}}, _batch([], [], []))


def test_e2e_weight_schedule_combination_and_state():
    loss = E2EDetectionLoss(_head(nc=2, end2end=True))
    assert loss.names == ("box_loss", "cls_loss", "l1_loss")
    assert loss.one2many.assigner.topk == 10 and loss.one2many.assigner.topk2 is None
    assert (loss.one2one.assigner.topk, loss.one2one.assigner.topk2) == (7, 1)
    weights = []
    for epoch in range(5):
        loss.set_progress(epoch, 5)
        weights.append(loss.o2m_weight)
    assert weights == pytest.approx([0.8, 0.625, 0.45, 0.275, 0.1])
    loss.set_progress(0, 1)
    assert loss.o2m_weight == pytest.approx(0.8)
    loss.set_progress(2, 5)
    g = torch.Generator().manual_seed(0)
    branch = lambda: {"boxes": torch.rand(2, 4, 16, generator=g) * 2, "scores": torch.randn(2, 2, 16, generator=g),  # noqa: E731
                      "feats": [torch.zeros(2, 1, 4, 4)]}
    preds = {"one2many": branch(), "one2one": branch()}
    batch = _batch([0, 1], [[0.3, 0.3, 0.4, 0.5], [0.6, 0.7, 0.5, 0.4]], [0, 1])
    total, items = loss(preds, batch)
    o2m, _ = loss.one2many(preds["one2many"], batch)
    o2o, o2o_items = loss.one2one(preds["one2one"], batch)
    assert total.item() == pytest.approx(0.45 * o2m.item() + 0.55 * o2o.item(), rel=1e-6)
    torch.testing.assert_close(items, o2o_items)
    other = E2EDetectionLoss(_head(nc=2, end2end=True))
    other.load_state_dict(loss.state_dict())
    assert other.state_dict() == {"epoch": 2, "epochs": 5, "o2m_weight": pytest.approx(0.45)}
    with pytest.raises(ValueError, match="one2many"):
        loss(preds["one2one"], batch)
