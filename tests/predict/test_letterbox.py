"""Letterbox shapes and pads on odd sizes, the batch tensor, and consistency with scale_boxes."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from yolokit.ops.boxes import letterbox_pad, scale_boxes
from yolokit.predict.preprocess import check_imgsz, letterbox, preprocess


def content_box(image: np.ndarray, pad_value: int = 114) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the non-padding region."""
    rows = np.where((image != pad_value).any(axis=(1, 2)))[0]
    cols = np.where((image != pad_value).any(axis=(0, 2)))[0]
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


@pytest.mark.parametrize(
    "hw, new_shape, auto, scaleup, out_hw, ratio, pad, content",
    [
        # 1080x810 (w x h) -> 640x480 with auto (no padding at all)
        ((810, 1080), 640, True, True, (480, 640), 640 / 1080, (0, 0), (0, 0, 480, 640)),
        # same image, square target: 160 rows of padding split 80 / 80
        ((810, 1080), 640, False, True, (640, 640), 640 / 1080, (0, 80), (80, 0, 560, 640)),
        # portrait 810x1080 (w x h), auto: 640 high, 480 wide
        ((1080, 810), 640, True, True, (640, 480), 640 / 1080, (0, 0), (0, 0, 640, 480)),
        # 1x1 scaled up to the full square
        ((1, 1), 640, False, True, (640, 640), 640.0, (0, 0), (0, 0, 640, 640)),
        # 1x1 without scale-up: 639 px of pad -> left round(319.5 - 0.1) = 319, right 320; auto: 31 -> 15 / 16
        ((1, 1), 640, False, False, (640, 640), 1.0, (319, 319), (319, 319, 320, 320)),
        ((1, 1), 640, True, False, (32, 32), 1.0, (15, 15), (15, 15, 16, 16)),
        # 33x2000 (h x w): r = 0.32, 11 rows; square: 629 rows -> top 314, bottom 315; auto: 21 -> top 10, bottom 11
        ((33, 2000), 640, False, True, (640, 640), 0.32, (0, 314), (314, 0, 325, 640)),
        ((33, 2000), 640, True, True, (32, 640), 0.32, (0, 10), (10, 0, 21, 640)),
        # rectangular target (h, w)
        ((100, 100), (320, 640), False, True, (320, 640), 3.2, (160, 0), (0, 160, 320, 480)),
    ],
)
def test_letterbox_hand_computed(hw, new_shape, auto, scaleup, out_hw, ratio, pad, content):
    image = np.full((*hw, 3), 200, dtype=np.uint8)
    boxed, got_ratio, got_pad = letterbox(image, new_shape, auto=auto, stride=32, scaleup=scaleup)
    assert boxed.shape == (*out_hw, 3) and boxed.dtype == np.uint8
    assert got_ratio == pytest.approx((ratio, ratio))
    assert got_pad == pad
    assert content_box(boxed) == content
    assert (boxed[:content[0]] == 114).all() and (boxed[content[2]:] == 114).all()


def test_letterbox_not_centered_pads_bottom_right():
    boxed, _, pad = letterbox(np.full((50, 100, 3), 9, np.uint8), 64, center=False)
    assert boxed.shape == (64, 64, 3) and pad == (0, 0)
    assert content_box(boxed) == (0, 0, 32, 64)


@pytest.mark.parametrize("seed", range(3))
def test_scale_boxes_pad_matches_letterbox_for_random_sizes(seed):
    rng = np.random.default_rng(seed)
    for _ in range(30):
        h, w = (int(v) for v in rng.integers(1, 3000, size=2))
        target = (int(rng.integers(1, 40)) * 32, int(rng.integers(1, 40)) * 32)
        boxed, (r, _), (left, top) = letterbox(np.zeros((h, w, 3), np.uint8), target)
        gain, pad = letterbox_pad(boxed.shape[:2], (h, w))
        assert gain == r and pad == (left, top)
        corners = torch.tensor([[0.0, 0.0, w, h]], dtype=torch.float64)
        mapped = corners * r + torch.tensor([left, top, left, top], dtype=torch.float64)
        back = scale_boxes(mapped, boxed.shape[:2], (h, w))
        assert torch.allclose(back, corners, atol=1e-6)


def test_letterbox_rejects_bad_input():
    with pytest.raises(ValueError, match="image"):
        letterbox(np.zeros((0, 5, 3), np.uint8), 64)
    with pytest.raises(ValueError, match="image"):
        letterbox("not an image", 64)


def test_preprocess_rgb_scaling_and_shapes():
    image = np.zeros((810, 1080, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 20, 30  # B, G, R
    batch = preprocess([image, image], 640, 32, auto=True)
    assert batch.shape == (2, 3, 480, 640) and batch.dtype == torch.float32
    assert torch.allclose(batch[0, :, 100, 100], torch.tensor([30, 20, 10]) / 255.0)
    assert preprocess([image], 640, 32, auto=False).shape == (1, 3, 640, 640)  # fixed-shape backend
    mixed = preprocess([image, np.zeros((33, 2000, 3), np.uint8)], 640, 32, auto=True)
    assert mixed.shape == (2, 3, 640, 640)  # different shapes -> square even for a dynamic backend
    assert preprocess([image], (320, 480), 32).shape == (1, 3, 320, 448)  # 427 wide + 21 -> 448


def test_preprocess_rejects_bad_images():
    with pytest.raises(ValueError, match="BGR uint8"):
        preprocess([np.zeros((10, 10), np.uint8)], 64, 32)
    with pytest.raises(ValueError, match="at least one"):
        preprocess([], 64, 32)


def test_check_imgsz_rounds_up_with_warning(caplog):
    with caplog.at_level(logging.WARNING):
        assert check_imgsz(321, 32) == (352, 352)
    assert "multiple" in caplog.text
    assert check_imgsz((320, 480), 32) == (320, 480)
    with pytest.raises(ValueError, match="imgsz"):
        check_imgsz("big", 32)
