"""Training augmentations: labels follow the image (white boxes on black), hand-computed geometry, defaults."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from yolokit.data.augment import (
    Sample,
    TrainAugmentConfig,
    TrainTransform,
    augment_hsv,
    box_candidates,
    flip_lr,
    flip_ud,
    letterbox_sample,
    mixup,
    mosaic4,
    random_affine,
    warp_boxes,
)
from yolokit.errors import ConfigError


def white_box_sample(h: int, w: int, box: tuple[int, int, int, int], cls: int = 0) -> Sample:
    """Black ``(h, w)`` image with white pixels exactly inside ``box`` = (x1, y1, x2, y2) pixel edges."""
    image = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    return Sample(image, np.array([cls], np.int64), np.array([box], np.float32))


def white_components(image: np.ndarray, min_side: int = 0) -> np.ndarray:
    """xyxy boxes (pixel edges) of the connected regions brighter than 127, sides >= ``min_side``."""
    mask = (image.max(axis=2) > 127).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    boxes = [[x, y, x + w, y + h] for x, y, w, h, _ in stats[1:count] if min(w, h) >= min_side]
    return np.asarray(boxes, np.float32).reshape(-1, 4)


def assert_labels_match_pixels(sample: Sample, tolerance: float = 1.0, min_side: int = 6) -> None:
    """Every label box is a white region's box (within ``tolerance`` px) and every sizeable region has a label."""
    regions = white_components(sample.image)
    for box in sample.boxes:
        assert len(regions) and np.abs(regions - box).max(axis=1).min() <= tolerance, (box, regions)
    for region in white_components(sample.image, min_side):
        assert len(sample) and np.abs(sample.boxes - region).max(axis=1).min() <= tolerance, (region, sample.boxes)


def test_defaults_are_the_reference_and_mappings_are_read():
    cfg = TrainAugmentConfig()
    assert dataclasses.astuple(cfg) == (1.0, 0.0, 0.0, 0.1, 0.5, 0.0, 0.0, 0.015, 0.7, 0.4, 0.0, 0.5, 10)
    read = TrainAugmentConfig.from_mapping({"degrees": "5", "fliplr": 0, "lr0": 0.01, "mosaic": None})
    assert read.degrees == 5.0 and read.fliplr == 0.0 and read.mosaic == 1.0  # other keys ignored, None = default

    class Settings:  # any object with the attributes, e.g. a frozen train config
        scale, close_mosaic = 0.25, 3

    assert TrainAugmentConfig.from_mapping(Settings()).scale == 0.25
    assert TrainAugmentConfig.from_mapping(Settings()).close_mosaic == 3
    for bad in ({"fliplr": 1.5}, {"scale": 1.0}, {"hsv_h": "x"}, {"close_mosaic": 2.5}, {"mosaic": float("nan")},
                {"perspective": 0.5}, {"degrees": True}):
        with pytest.raises(ConfigError):
            TrainAugmentConfig.from_mapping(bad)


def test_box_candidates_hand_computed():
    before = np.array([[0, 0, 10, 10]] * 4 + [[0, 0, 1000, 10]], np.float32)
    after = np.array([[0, 0, 2, 10],  # w = 2 is not > 2 px
                      [0, 0, 3, 10],  # area 30 / 100 = 0.3 > 0.1
                      [5, 5, 8, 8],  # area 9 / 100 = 0.09
                      [0, 0, 10, 10],  # unchanged
                      [0, 0, 500, 4]], np.float32)  # aspect 125 >= 100
    assert box_candidates(before, after).tolist() == [False, True, False, True, False]


def test_affine_crop_clips_and_drops_hand_computed():
    # scale 0, translate 0, no rotation: M is a pure translation by (out - in) / 2 = -25 px (centre crop)
    cfg = TrainAugmentConfig(scale=0.0, translate=0.0)
    image = np.zeros((100, 100, 3), np.uint8)
    sample = Sample(image, np.array([0, 1, 2]), np.array([[10, 10, 40, 40], [0, 0, 26, 26], [30, 40, 60, 70]],
                                                          np.float32))
    out = random_affine(sample, np.random.default_rng(0), cfg, (50, 50))
    assert out.image.shape == (50, 50, 3)
    # [-15, -15, 15, 15] clipped (area 225 / 900 kept); [-25, -25, 1, 1] -> 1 px wide, dropped; [5, 15, 35, 45]
    assert out.cls.tolist() == [0, 2]
    np.testing.assert_allclose(out.boxes, [[0, 0, 15, 15], [5, 15, 35, 45]], atol=1e-4)


@pytest.mark.parametrize("seed", range(6))
def test_affine_labels_follow_the_white_box(seed):
    cfg = TrainAugmentConfig(degrees=30.0, shear=8.0, perspective=0.0005, translate=0.1, scale=0.4)
    sample = white_box_sample(96, 128, (40, 30, 90, 70))
    out = random_affine(sample, np.random.default_rng(seed), cfg, (96, 96))
    assert out.image.shape == (96, 96, 3) and len(out) == 1
    assert_labels_match_pixels(out)


def test_warp_boxes_maps_corners():
    matrix = np.array([[2.0, 0.0, 1.0], [0.0, 3.0, -2.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(warp_boxes(np.array([[1, 2, 3, 4]], np.float32), matrix), [[3, 4, 7, 10]])
    rotate90 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # (x, y) -> (-y, x)
    np.testing.assert_allclose(warp_boxes(np.array([[1, 2, 3, 5]], np.float32), rotate90), [[-5, 1, -2, 3]])
    assert warp_boxes(np.zeros((0, 4), np.float32), matrix).shape == (0, 4)


def test_flips_are_exact():
    sample = white_box_sample(40, 60, (5, 7, 20, 30))
    sample.image[0, 0] = (1, 2, 3)  # a marker pixel
    lr, ud = flip_lr(sample), flip_ud(sample)
    np.testing.assert_array_equal(lr.image, sample.image[:, ::-1])
    np.testing.assert_array_equal(ud.image, sample.image[::-1])
    np.testing.assert_array_equal(lr.boxes, [[40, 7, 55, 30]])
    np.testing.assert_array_equal(ud.boxes, [[5, 10, 20, 33]])
    np.testing.assert_array_equal(white_components(lr.image), lr.boxes)
    np.testing.assert_array_equal(white_components(ud.image), ud.boxes)
    twice = flip_lr(lr)
    np.testing.assert_array_equal(twice.image, sample.image)
    np.testing.assert_array_equal(twice.boxes, sample.boxes)


def test_hsv_value_gain_hand_computed_and_labels_kept():
    grey = np.full((8, 8, 3), 114, np.uint8)  # saturation 0: only V changes
    gain = np.random.default_rng(3).uniform(-1, 1, 3)[2] * 0.4
    out = augment_hsv(grey, np.random.default_rng(3), 0.0, 0.0, 0.4)
    assert np.all(out == int(np.clip(114 * (1 + gain), 0, 255)))
    assert augment_hsv(grey, np.random.default_rng(3), 0.0, 0.0, 0.0) is grey  # no gain: untouched, nothing drawn
    hsv_only = TrainTransform({"mosaic": 0, "translate": 0, "scale": 0, "fliplr": 0, "hsv_h": 0.5}, 64)
    sample = white_box_sample(64, 64, (10, 12, 30, 40))
    sample.image[:] = (200, 40, 10)
    out = hsv_only(0, lambda i: sample, 1, np.random.default_rng(1))
    np.testing.assert_array_equal(out.boxes, sample.boxes)
    assert not np.array_equal(out.image, sample.image)  # the hue moved


def test_letterbox_sample_moves_boxes():
    sample = Sample(np.zeros((50, 100, 3), np.uint8), np.array([1]), np.array([[0, 0, 100, 50]], np.float32))
    out, gains, pad = letterbox_sample(sample, (64, 64))
    assert out.image.shape == (64, 64, 3) and gains == (0.64, 0.64) and pad == (0, 16)
    np.testing.assert_allclose(out.boxes, [[0, 16, 64, 48]])


def test_mosaic_places_four_images_around_the_centre():
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    sizes = [(20, 32), (32, 18), (25, 25), (32, 30)]  # (h, w), long sides <= imgsz 32
    samples = [Sample(np.full((h, w, 3), c, np.uint8), np.array([k]), np.array([[0, 0, w, h]], np.float32))
               for k, ((h, w), c) in enumerate(zip(sizes, colours, strict=True))]
    out = mosaic4(samples, 32, np.random.default_rng(7))
    xc, yc = (int(v) for v in np.random.default_rng(7).uniform(16, 48, 2))
    assert out.image.shape == (64, 64, 3)
    expected = {0: (xc - 32, yc - 20, xc, yc), 1: (xc, yc - 32, xc + 18, yc),
                2: (xc - 25, yc, xc, yc + 25), 3: (xc, yc, xc + 30, yc + 32)}
    for k, (x1, y1, x2, y2) in expected.items():
        x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, 64), min(y2, 64)
        region = np.all(out.image == colours[k], axis=2)
        assert region.sum() == (x2 - x1) * (y2 - y1) and region[y1:y2, x1:x2].all()
        np.testing.assert_array_equal(out.boxes[out.cls == k], [[x1, y1, x2, y2]])
    grey = np.all(out.image == 114, axis=2).sum()
    assert grey == 64 * 64 - sum((min(x2, 64) - max(x1, 0)) * (min(y2, 64) - max(y1, 0))
                                 for x1, y1, x2, y2 in expected.values())


@pytest.mark.parametrize("seed", range(8))
def test_full_pipeline_labels_follow_the_white_boxes(seed):
    boxes = [(8, 10, 40, 36), (20, 6, 50, 30), (5, 20, 30, 55), (30, 25, 58, 50)]
    images = [white_box_sample(64 - 8 * (k % 2), 64, box, cls=k) for k, box in enumerate(boxes)]
    # axis-aligned (no rotation/shear): a box cut by the border stays exact; rotated cut boxes are looser by nature
    transform = TrainTransform({"fliplr": 0.5, "flipud": 0.5, "hsv_v": 0.0, "hsv_s": 0.0}, 64)
    out = transform(seed % 4, lambda i: images[i], 4, np.random.default_rng([seed, 0, 0]))
    assert out.image.shape == (64, 64, 3)
    assert_labels_match_pixels(out)


def test_mixup_blends_and_keeps_both_label_sets():
    first = white_box_sample(16, 16, (2, 2, 8, 8), cls=0)
    second = Sample(np.full((16, 16, 3), 200, np.uint8), np.array([1]), np.array([[4, 4, 12, 12]], np.float32))
    ratio = np.random.default_rng(0).beta(32.0, 32.0)
    out = mixup(first, second, np.random.default_rng(0))
    assert out.cls.tolist() == [0, 1] and out.boxes.shape == (2, 4)
    assert abs(int(out.image[0, 0, 0]) - 200 * (1 - ratio)) <= 1
    assert abs(int(out.image[4, 4, 0]) - (255 * ratio + 200 * (1 - ratio))) <= 1
    with pytest.raises(ValueError):
        mixup(first, white_box_sample(8, 8, (1, 1, 2, 2)), np.random.default_rng(0))


def test_transform_without_mosaic_is_a_letterbox_when_nothing_is_random():
    still = TrainTransform({"mosaic": 1.0, "translate": 0, "scale": 0, "fliplr": 0, "hsv_h": 0, "hsv_s": 0,
                            "hsv_v": 0}, 64)
    still.use_mosaic = False  # close_mosaic
    sample = white_box_sample(40, 64, (10, 5, 30, 25))
    out = still(0, lambda i: sample, 1, np.random.default_rng(0))
    expected = letterbox_sample(sample, (64, 64))[0]
    np.testing.assert_array_equal(out.image, expected.image)
    np.testing.assert_allclose(out.boxes, expected.boxes, atol=1e-4)
    np.testing.assert_array_equal(out.boxes, [[10, 17, 30, 37]])
