import pytest
import torch

from yolokit.ops.anchors import dist2bbox, make_anchors


def test_make_anchors_centres_and_strides_per_level():
    feats = [torch.zeros(1, 4, 2, 3), torch.zeros(1, 4, 1, 2)]
    points, strides = make_anchors(feats, [8, 16])
    expected = torch.tensor(
        [[0.5, 0.5], [1.5, 0.5], [2.5, 0.5], [0.5, 1.5], [1.5, 1.5], [2.5, 1.5], [0.5, 0.5], [1.5, 0.5]]
    )
    assert torch.equal(points, expected)
    assert torch.equal(strides.squeeze(1), torch.tensor([8.0] * 6 + [16.0] * 2))


def test_make_anchors_offset_dtype_and_count_at_640():
    feats = [torch.zeros(1, 1, 640 // s, 640 // s, dtype=torch.float64) for s in (8, 16, 32)]
    points, strides = make_anchors(feats, [8, 16, 32], offset=0.0)
    assert points.shape == (8400, 2) and strides.shape == (8400, 1)
    assert points.dtype == torch.float64
    assert points[0].tolist() == [0.0, 0.0] and points[-1].tolist() == [19.0, 19.0]


def test_make_anchors_rejects_mismatched_strides():
    with pytest.raises(ValueError, match="one stride per level"):
        make_anchors([torch.zeros(1, 1, 2, 2)], [8, 16])


def test_dist2bbox_xyxy_and_xywh():
    distance = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # ltrb, (1, 4)
    point = torch.tensor([[10.0, 20.0]])
    assert dist2bbox(distance, point, xywh=False, dim=-1).tolist() == [[9.0, 18.0, 13.0, 24.0]]
    assert dist2bbox(distance, point, xywh=True, dim=-1).tolist() == [[11.0, 21.0, 4.0, 6.0]]


def test_dist2bbox_channel_first_default_dim():
    distance = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1).repeat(2, 1, 3)  # (B, 4, A)
    points = torch.tensor([[0.5, 1.5, 2.5], [0.5, 0.5, 0.5]]).unsqueeze(0)  # (1, 2, A)
    boxes = dist2bbox(distance, points, xywh=False)
    assert boxes.shape == (2, 4, 3)
    assert boxes[0, :, 2].tolist() == [1.5, -1.5, 5.5, 4.5]
    with pytest.raises(ValueError, match="expected 4 distances"):
        dist2bbox(torch.zeros(1, 3, 5), points)
