"""Shared image transforms: letterbox (also tested with predict: tests/predict/test_letterbox.py), BGR -> RGB CHW."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from yolokit.data.transforms import bgr_to_rgb_chw, letterbox, to_input_tensor


def _image(h: int, w: int, bgr: tuple[int, int, int]) -> np.ndarray:
    image = np.zeros((h, w, 3), np.uint8)
    image[:] = bgr
    return image


def test_bgr_to_rgb_chw_swaps_channels_and_layout():
    image = _image(2, 3, (10, 20, 30))
    image[1, 2] = (1, 2, 3)  # one pixel differs: row 1, column 2
    out = bgr_to_rgb_chw([image, _image(2, 3, (40, 50, 60))])
    assert out.shape == (2, 3, 2, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    assert out[0, :, 0, 0].tolist() == [30, 20, 10]  # R, G, B
    assert out[0, :, 1, 2].tolist() == [3, 2, 1]
    assert out[1, :, 1, 1].tolist() == [60, 50, 40]


def test_bgr_to_rgb_chw_refuses_mixed_shapes_and_empty_lists():
    with pytest.raises(ValueError, match="one shape"):
        bgr_to_rgb_chw([_image(2, 3, (0, 0, 0)), _image(3, 2, (0, 0, 0))])
    with pytest.raises(ValueError, match="at least one image"):
        bgr_to_rgb_chw([])


def test_to_input_tensor_is_rgb_float_in_unit_range():
    batch = to_input_tensor([_image(4, 4, (0, 51, 255))])
    assert batch.dtype == torch.float32 and batch.shape == (1, 3, 4, 4)
    assert batch[0, :, 0, 0].tolist() == [1.0, pytest.approx(0.2), 0.0]


def test_letterbox_is_the_predict_letterbox():
    from yolokit.predict.preprocess import letterbox as predict_letterbox

    assert predict_letterbox is letterbox
    padded, ratio, (left, top) = letterbox(_image(90, 240, (1, 2, 3)), (96, 160), auto=False, scaleup=False)
    # r = min(96/90, 160/240, 1) = 2/3 -> 160x60 resized, 36 rows of padding split 18/18
    assert padded.shape == (96, 160, 3) and ratio == (2 / 3, 2 / 3) and (left, top) == (0, 18)
    assert padded[0, 0].tolist() == [114, 114, 114] and padded[50, 80].tolist() == [1, 2, 3]
