"""YOLOv5 loss: anchor matching and neighbour cells on hand-made targets, terms on hand-computable predictions,
gain scaling, and ``build_loss`` choosing it for a YOLOv5 head."""

from __future__ import annotations

import math
import types

import pytest
import torch

from yolokit.losses import build_loss
from yolokit.losses.yolov5 import YOLOv5Loss, build_targets, scaled_gains
from yolokit.models.builder import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


TINY = {"nc": 2, "depth_multiple": 1.0, "width_multiple": 1.0,
        "anchors": [[8, 8, 16, 16], [24, 24, 32, 32], [48, 48, 64, 64]],
        "backbone": [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [8, 3, 2]],
                     [-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [8, 3, 2]]],
        "head": [[[2, 3, 4], 1, "Detect", ["nc", "anchors"]]]}


def test_matching_by_ratio_and_the_two_nearest_neighbour_cells() -> None:
    # grid 10 x 10; box centre (3.4, 6.7) cells, size 2 x 2 cells: anchors 1x1 (ratio 2) and 3x3 (1.5) match, 20x20
    # (10) does not; x fraction .4 -> the left cell too, y fraction .7 -> the cell below too.
    targets = torch.tensor([[0.0, 1.0, 0.34, 0.67, 0.2, 0.2]])
    anchors = torch.tensor([[1.0, 1.0], [3.0, 3.0], [20.0, 20.0]])
    match = build_targets(targets, anchors, (10, 10))
    cells = sorted(zip(match["anchor"].tolist(), match["gi"].tolist(), match["gj"].tolist(), strict=True))
    assert cells == sorted((a, gi, gj) for a in (0, 1) for gi, gj in ((3, 6), (2, 6), (3, 7)))
    assert match["cls"].tolist() == [1] * 6 and match["image"].tolist() == [0] * 6
    left = (match["gi"] == 2).nonzero()[0, 0]
    torch.testing.assert_close(match["box"][left], torch.tensor([1.4, 0.7, 2.0, 2.0]))
    below = (match["gj"] == 7).nonzero()[0, 0]
    torch.testing.assert_close(match["box"][below], torch.tensor([0.4, -0.3, 2.0, 2.0]))


def test_no_neighbour_beyond_the_border_and_no_targets() -> None:
    targets = torch.tensor([[1.0, 0.0, 0.05, 0.05, 0.1, 0.1]])  # centre (0.5, 0.5) in the corner cell
    match = build_targets(targets, torch.tensor([[1.0, 1.0]]), (10, 10))
    assert list(zip(match["gi"].tolist(), match["gj"].tolist(), strict=True)) == [(0, 0)]
    assert match["image"].tolist() == [1]
    empty = build_targets(torch.zeros(0, 6), torch.tensor([[1.0, 1.0]]), (4, 4))
    assert all(v.shape[0] == 0 for v in empty.values())


def test_gains_are_scaled_like_the_original_training_script() -> None:
    assert scaled_gains(0.05, 1.0, 0.5, nl=3, nc=80, imgsz=640) == pytest.approx((0.05, 1.0, 0.5))
    assert scaled_gains(0.05, 1.0, 0.5, nl=3, nc=2, imgsz=320) == pytest.approx((0.05, 0.25, 0.0125))
    assert scaled_gains(0.05, 1.0, 0.5, nl=4, nc=80, imgsz=1280) == pytest.approx((0.0375, 3.0, 0.375))


def test_terms_on_zero_logits() -> None:
    """Zero logits: every BCE entry is log 2 whatever its target, so obj = log 2 * sum(balance) and cls = log 2 per
    level with matches. The box (centre 3.5 / 8 of the image, size 1 / 4) matches the 2 x 2 anchor on the 8 x 8 and
    4 x 4 levels (ratios 1 and 2) but not on the 2 x 2 level (ratio 4 is not below anchor_t)."""
    head = types.SimpleNamespace(nc=2, nl=3, anchors=torch.tensor([[[2.0, 2.0]], [[2.0, 2.0]], [[2.0, 2.0]]]))
    preds = [torch.zeros(1, 1, s, s, 7, requires_grad=True) for s in (8, 4, 2)]
    batch = {"batch_idx": torch.tensor([0.0]), "cls": torch.tensor([[1.0]]),
             "bboxes": torch.tensor([[3.5 / 8, 3.5 / 8, 2 / 8, 2 / 8]])}
    total, items = YOLOv5Loss(head, imgsz=640)(preds, batch)
    box, obj, cls = items.tolist()
    assert box > 0 and obj == pytest.approx(math.log(2) * (4.0 + 1.0 + 0.4), rel=1e-6)
    assert cls == pytest.approx(2 * math.log(2) * 0.5 * 2 / 80, rel=1e-6)
    assert total.item() == pytest.approx(box + obj + cls, rel=1e-6)
    total.backward()
    assert preds[2].grad[..., :4].abs().max() == 0  # no match on the coarsest level: no box gradient there
    single = YOLOv5Loss(types.SimpleNamespace(nc=1, nl=3, anchors=head.anchors))
    assert single([torch.zeros(1, 1, s, s, 6) for s in (8, 4, 2)], {**batch, "cls": torch.tensor([[0.0]])})[1][2] == 0


def test_exact_box_alone_gives_zero_box_loss() -> None:
    head = types.SimpleNamespace(nc=2, nl=3, anchors=torch.tensor([[[2.0, 2.0]], [[40.0, 40.0]], [[40.0, 40.0]]]))
    preds = [torch.zeros(2, 1, s, s, 7) for s in (8, 4, 2)]
    batch = {"batch_idx": torch.tensor([1.0]), "cls": torch.tensor([[0.0]]),
             "bboxes": torch.tensor([[3.5 / 8, 3.5 / 8, 2 / 8, 2 / 8]])}  # only the 2x2 anchor of level 0 matches
    _, items = YOLOv5Loss(head)(preds, batch)
    assert items[0].item() == pytest.approx(0.0, abs=1e-6)


def test_build_loss_picks_the_yolov5_loss_and_its_defaults() -> None:
    model = build_model(TINY).train()
    loss = build_loss(model, {"imgsz": 320})
    assert isinstance(loss, YOLOv5Loss) and loss.names == ("box_loss", "obj_loss", "cls_loss")
    assert (loss.box, loss.obj, loss.cls) == pytest.approx((0.05, 0.25, 0.0125))
    assert build_loss(model, {"box": 0.1}).box == pytest.approx(0.1)
    x = torch.rand(2, 3, 64, 64)
    batch = {"batch_idx": torch.tensor([0.0, 1.0]), "cls": torch.tensor([[0.0], [1.0]]),
             "bboxes": torch.tensor([[0.5, 0.5, 0.3, 0.4], [0.3, 0.6, 0.2, 0.2]])}
    total, items = loss(model(x), batch)
    assert total.item() == pytest.approx(items.sum().item() * 2, rel=1e-6) and (items > 0).all()
    with pytest.raises(ValueError, match="AnchorDetect"):
        loss({"boxes": x}, batch)


def test_the_loss_can_be_minimised_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    model = build_model(TINY).train()
    loss = build_loss(model, {"imgsz": 64})
    x = torch.rand(2, 3, 64, 64)
    batch = {"batch_idx": torch.tensor([0.0, 1.0, 1.0]), "cls": torch.tensor([[0.0], [1.0], [0.0]]),
             "bboxes": torch.tensor([[0.5, 0.5, 0.3, 0.4], [0.3, 0.6, 0.2, 0.2], [0.7, 0.3, 0.4, 0.3]])}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    first = None
    for _ in range(60):
        total, items = loss(model(x), batch)
        first = items.clone() if first is None else first
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert items[0] < 0.9 * first[0] and items[2] < first[2]  # box and class terms fall (objectness targets rise)
