"""Greedy NMS semantics, the detection post-processing steps, and equality with a naive greedy loop."""

from __future__ import annotations

import pytest
import torch

import yolokit.ops.nms as nms_module
from yolokit.ops.boxes import box_iou, xyxy2xywh
from yolokit.ops.nms import batched_nms, filter_end2end, nms, non_max_suppression


def naive_greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Textbook greedy NMS: visit by score (ties by index), keep unless IoU > threshold with a kept box."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    iou = box_iou(boxes, boxes)
    keep: list[int] = []
    for i in order:
        if all(float(iou[k, i]) <= threshold for k in keep):
            keep.append(i)
    return torch.tensor(keep, dtype=torch.int64)


def make_pred(boxes_xyxy: list[list[float]], class_scores: list[list[float]]) -> torch.Tensor:
    """(1, 4+nc, A) head output from xyxy boxes and per-class scores."""
    xywh = xyxy2xywh(torch.tensor(boxes_xyxy, dtype=torch.float32))
    return torch.cat((xywh, torch.tensor(class_scores, dtype=torch.float32)), 1).T[None]


def test_nms_hand_cases_and_chain():
    boxes = torch.tensor([
        [0.0, 0.0, 10.0, 10.0],  # A 0.9
        [1.0, 0.0, 11.0, 10.0],  # B 0.8: IoU(A, B) = 90/110 = 0.818 -> suppressed
        [2.0, 0.0, 12.0, 10.0],  # C 0.7: IoU(A, C) = 80/120 = 0.667 -> kept at 0.7, although IoU(B, C) = 0.818
        [50.0, 50.0, 60.0, 60.0],  # D 0.95: far away
    ])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    keep = nms(boxes, scores, 0.7)
    assert keep.dtype == torch.int64
    assert keep.tolist() == [3, 0, 2]  # greedy: C survives because its suppressor B was itself suppressed
    assert nms(boxes, scores, 0.6).tolist() == [3, 0]


def test_nms_iou_exactly_at_threshold_is_kept():
    boxes = torch.tensor([[0.0, 0.0, 2.0, 1.0], [0.0, 0.0, 1.0, 1.0]])  # IoU exactly 0.5
    scores = torch.tensor([0.9, 0.8])
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, 0.49).tolist() == [0]


def test_nms_empty_and_bad_input():
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).shape == (0,)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        nms(torch.zeros(3, 5), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="scores"):
        nms(torch.zeros(3, 4), torch.zeros(2), 0.5)


@pytest.mark.parametrize("seed", range(6))
def test_nms_equals_naive_greedy_on_random_boxes(seed, monkeypatch):
    monkeypatch.setattr(nms_module, "_BLOCK", 16)  # several blocks and kept-chunks even for a few hundred boxes
    monkeypatch.setattr(nms_module, "_KEPT_CHUNK", 8)
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 250, (1,), generator=g))
    xy = torch.rand(n, 2, generator=g) * 100
    boxes = torch.cat((xy, xy + torch.rand(n, 2, generator=g) * 40 + 0.5), 1)
    scores = torch.randint(0, 20, (n,), generator=g).float() / 20  # many ties
    threshold = float(torch.rand(1, generator=g)) * 0.9
    assert torch.equal(nms(boxes, scores, threshold), naive_greedy_nms(boxes, scores, threshold))


def test_batched_nms_equals_naive_per_class():
    g = torch.Generator().manual_seed(7)
    n = 300
    xy = torch.rand(n, 2, generator=g) * 60
    boxes = torch.cat((xy, xy + torch.rand(n, 2, generator=g) * 30 + 1), 1)
    scores = torch.rand(n, generator=g)
    classes = torch.randint(0, 4, (n,), generator=g).float()
    expected = torch.cat([torch.nonzero(classes == c).squeeze(1)[naive_greedy_nms(
        boxes[classes == c], scores[classes == c], 0.5)] for c in range(4)])
    expected = expected[torch.sort(scores[expected], descending=True, stable=True).indices]
    assert torch.equal(batched_nms(boxes, scores, classes, 0.5), expected)
    # boxes spanning more than max_wh: like the reference, one NMS over class-shifted boxes (classes may interact)
    huge = boxes * 500
    shifted = huge + classes[:, None] * 7680
    assert torch.equal(batched_nms(huge, scores, classes, 0.5), naive_greedy_nms(shifted, scores, 0.5))


def test_non_max_suppression_classes_agnostic_conf_and_max_det():
    boxes = [[0, 0, 10, 10], [0, 0, 10, 9.5], [0, 0, 10, 9.0], [20, 20, 30, 30]]
    scores = [[0.9, 0.0], [0.0, 0.8], [0.7, 0.0], [0.25, 0.1]]  # last: best score equals conf -> dropped
    pred = make_pred(boxes, scores)
    out = non_max_suppression(pred, conf=0.25, iou=0.5)[0]
    assert out.shape == (2, 6)  # box 2 suppressed by box 0 (same class); box 1 is another class
    assert out[:, 5].tolist() == [0.0, 1.0] and out[:, 4].tolist() == pytest.approx([0.9, 0.8])
    assert torch.allclose(out[0, :4], torch.tensor([0.0, 0.0, 10.0, 10.0]))
    agnostic = non_max_suppression(pred, conf=0.25, iou=0.5, agnostic=True)[0]
    assert agnostic[:, 4].tolist() == pytest.approx([0.9])
    only_one = non_max_suppression(pred, conf=0.25, iou=0.5, classes=[1])[0]
    assert only_one[:, 5].tolist() == [1.0]
    assert non_max_suppression(pred, conf=0.25, iou=0.5, max_det=1)[0].shape == (1, 6)
    assert non_max_suppression(pred, conf=0.95)[0].shape == (0, 6)
    truncated = non_max_suppression(pred, conf=0.05, iou=0.5, max_nms=2)[0]  # only the 2 best rows enter NMS
    assert truncated[:, 4].tolist() == pytest.approx([0.9, 0.8])


def test_non_max_suppression_multi_label_and_batch():
    pred = make_pred([[0, 0, 10, 10], [40, 40, 50, 50]], [[0.6, 0.5], [0.3, 0.0]])
    pred = torch.cat((pred, torch.zeros_like(pred)))  # second image: nothing above conf
    out = non_max_suppression(pred, conf=0.2, iou=0.7, multi_label=True)
    assert len(out) == 2 and out[1].shape == (0, 6)
    assert torch.allclose(out[0][:, 4:], torch.tensor([[0.6, 0.0], [0.5, 1.0], [0.3, 0.0]]))
    single = non_max_suppression(pred[:1], conf=0.2, iou=0.7)[0]
    assert torch.allclose(single[:, 4:], torch.tensor([[0.6, 0.0], [0.3, 0.0]]))
    with pytest.raises(ValueError, match=r"\(B, 4\+nc, A\)"):
        non_max_suppression(torch.zeros(2, 8))


def test_30k_candidates_one_survivor_per_cluster():
    # 300 clusters of 100 jittered 20 px boxes: any two in a cluster have IoU >= (18/22)^2 > 0.5, clusters are apart
    g = torch.Generator().manual_seed(0)
    grid = torch.stack(torch.meshgrid(torch.arange(20), torch.arange(15), indexing="xy"), -1).view(-1, 2) * 40.0
    centres = grid.repeat_interleave(100, 0) + torch.rand(30000, 2, generator=g) * 2 - 1  # (30000, 2)
    boxes = torch.cat((centres - 10, centres + 10), 1)
    scores = torch.rand(30000, generator=g)
    keep = nms(boxes, scores, 0.5)
    assert keep.shape == (300,)
    best_per_cluster = scores.view(300, 100).argmax(1) + torch.arange(300) * 100
    assert sorted(keep.tolist()) == sorted(best_per_cluster.tolist())
    pred = torch.cat((xyxy2xywh(boxes), scores[:, None]), 1).T[None]  # (1, 5, 30000)
    out = non_max_suppression(pred, conf=0.0, iou=0.5, max_nms=30000, max_det=1000)[0]
    assert 1 <= out.shape[0] <= 300
    assert out.shape[0] == int((scores.view(300, 100).max(1).values > 0).sum())


def test_filter_end2end_conf_classes_max_det():
    rows = torch.tensor([[[0, 0, 1, 1, 0.9, 2], [0, 0, 2, 2, 0.5, 1], [0, 0, 3, 3, 0.4, 2], [0, 0, 4, 4, 0.1, 0]]])
    out = filter_end2end(rows.float(), conf=0.4)[0]
    assert out[:, 4].tolist() == pytest.approx([0.9, 0.5])  # 0.4 is not > 0.4
    assert filter_end2end(rows.float(), conf=0.05, classes=[2], max_det=1)[0][:, 4].tolist() == pytest.approx([0.9])
    assert filter_end2end(rows.float(), conf=0.05, classes=(0,))[0][:, 5].tolist() == [0.0]
    with pytest.raises(ValueError, match=r"\(B, K, 6\)"):
        filter_end2end(torch.zeros(1, 6, 5))


def uniform_boxes(n: int, seed: int, max_wh: float, size: float = 640.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    boxes = torch.cat((xy, xy + torch.rand(n, 2, generator=g) * max_wh), 1)
    return boxes, torch.randint(0, 50, (n,), generator=g).float() / 50  # ties in score


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("threshold", [0.0, 0.45, 0.7, 0.95])
def test_sweep_equals_naive_greedy(seed, threshold, monkeypatch):
    monkeypatch.setattr(nms_module, "_SWEEP_MIN", 1)  # the sweep path for a few hundred boxes
    monkeypatch.setattr(nms_module, "_SWEEP_ROWS", 16)
    monkeypatch.setattr(nms_module, "_SWEEP_COLS", 32)
    monkeypatch.setattr(nms_module, "_SWEEP_MAX_FRACTION", 1.0)
    boxes, scores = uniform_boxes(400, seed, max_wh=40 + 40 * seed, size=200)
    boxes[::37, 2] = boxes[::37, 0] + 1e-3  # a few hair-thin boxes (reach bound ~ x1)
    sorted_boxes = boxes[torch.sort(scores, descending=True, stable=True).indices]
    assert nms_module._greedy_sweep(sorted_boxes, threshold) is not None  # the sweep really ran
    assert torch.equal(nms(boxes, scores, threshold), naive_greedy_nms(boxes, scores, threshold))


def test_sweep_long_chain_finishes_sequentially(monkeypatch):
    # 300 boxes sliding by 1 px with decreasing scores: each suppresses the next, so the greedy answer alternates
    monkeypatch.setattr(nms_module, "_SWEEP_MIN", 1)
    monkeypatch.setattr(nms_module, "_SWEEP_PASSES", 3)  # force the sequential finish
    x = torch.arange(300.0)
    boxes = torch.stack((x, torch.zeros(300), x + 10, torch.full((300,), 10.0)), 1)
    scores = torch.linspace(1, 0.1, 300)
    keep = nms(boxes, scores, 0.8)  # IoU(shift 1) = 9/11 > 0.8, IoU(shift 2) = 8/12 < 0.8
    assert keep.tolist() == list(range(0, 300, 2))
    assert torch.equal(keep, naive_greedy_nms(boxes, scores, 0.8))


def test_sweep_batched_classes_equal_per_class(monkeypatch):
    boxes, scores = uniform_boxes(600, 3, max_wh=120, size=300)
    classes = torch.randint(0, 5, (600,), generator=torch.Generator().manual_seed(1)).float()
    expected = batched_nms(boxes, scores, classes, 0.5)  # per-class block path (600 < _SWEEP_MIN)
    monkeypatch.setattr(nms_module, "_SWEEP_MIN", 1)
    monkeypatch.setattr(nms_module, "_SWEEP_MAX_FRACTION", 1.0)
    assert torch.equal(batched_nms(boxes, scores, classes, 0.5), expected)


def test_30k_uniform_boxes_worst_case():
    # many survivors (cost of the block method ~ candidates x kept); no timing here, only the answer's invariants
    boxes, scores = uniform_boxes(30000, 0, max_wh=60)
    keep = nms(boxes, scores, 0.5)
    assert 10000 < keep.numel() < 30000 and keep.unique().numel() == keep.numel()
    kept = boxes[keep]
    assert not bool((box_iou(kept[:300], kept) > 0.5).sum(1).gt(1).any())  # kept boxes never overlap > t
    kept_mask = torch.zeros(30000, dtype=torch.bool)
    kept_mask[keep] = True
    dropped = (~kept_mask).nonzero().squeeze(1)[:300]  # every dropped box overlaps a kept, higher-ranked box
    overlap = box_iou(boxes[dropped], kept) > 0.5  # (300, K)
    rank = torch.empty(30000, dtype=torch.int64)
    rank[torch.sort(scores, descending=True, stable=True).indices] = torch.arange(30000)
    assert bool((overlap & (rank[keep][None, :] < rank[dropped][:, None])).any(1).all())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_max_keep_stops_early_with_the_same_top_boxes(seed):
    """max_keep (max_det) may stop the work early; the first max_keep kept boxes equal the full run's."""
    g = torch.Generator().manual_seed(seed)
    n = 3000
    centres = torch.rand(40, 2, generator=g) * 600
    xy = centres[torch.randint(0, 40, (n,), generator=g)] + torch.randn(n, 2, generator=g) * 12
    wh = torch.rand(n, 2, generator=g) * 50 + 15
    boxes = torch.cat([xy - wh / 2, xy + wh / 2], 1)
    scores = torch.rand(n, generator=g)
    classes = torch.randint(0, 5, (n,), generator=g).float()
    full = nms(boxes, scores, 0.6)
    assert len(full) > 300
    assert torch.equal(nms(boxes, scores, 0.6, max_keep=100)[:100], full[:100])
    full_batched = batched_nms(boxes, scores, classes, 0.6)
    assert torch.equal(batched_nms(boxes, scores, classes, 0.6, max_keep=300)[:300], full_batched[:300])
    expected = []  # per class with the naive loop, merged by score
    for c in classes.unique():
        index = (classes == c).nonzero().squeeze(1)
        expected += index[naive_greedy_nms(boxes[index], scores[index], 0.6)].tolist()
    expected.sort(key=lambda i: (-float(scores[i]), i))
    assert full_batched[:300].tolist() == expected[:300]
