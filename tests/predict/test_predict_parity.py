"""End-to-end predict parity with the reference implementation's saved predictions (tests/fixtures)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from yolokit.backends import TorchBackend
from yolokit.config import PredictConfig
from yolokit.ops.boxes import box_iou
from yolokit.predict.predictor import Predictor

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CASES = [("yolov8", "default"), ("yolo11", "default"), ("yolo26", "default"), ("yolo26", "nms_false")]


def match_rows(expected: torch.Tensor, got: torch.Tensor) -> torch.Tensor:
    """Reorder ``got`` to pair with ``expected`` (both (n, 6)): greedy by IoU within the same class."""
    order, used = [], set()
    iou = box_iou(expected[:, :4], got[:, :4])
    for i in range(expected.shape[0]):
        same_class = got[:, 5] == expected[i, 5]
        candidates = [j for j in range(got.shape[0]) if j not in used and bool(same_class[j])]
        assert candidates, f"no predicted box of class {int(expected[i, 5])} left for reference row {i}"
        best = max(candidates, key=lambda j: (float(iou[i, j]), -abs(float(got[j, 4] - expected[i, 4]))))
        used.add(best)
        order.append(best)
    return got[order]


@pytest.mark.parametrize("model_name, mode", CASES)
def test_predictions_match_reference(model_name, mode):
    from yolokit.weights import load_weights

    reference = json.loads((FIXTURES / f"{model_name}-tiny-shapes-predictions.json").read_text())
    backend = TorchBackend(load_weights(FIXTURES / f"{model_name}-tiny-shapes.pt"))
    config = PredictConfig(conf=reference["conf"], iou=reference["iou"], imgsz=reference["imgsz"],
                           nms=mode != "nms_false", verbose=False)
    sources = [str(FIXTURES / "images" / name) for name in reference["source_images"]]
    results = Predictor(backend, config).predict(sources)
    assert len(results) == len(sources)
    for name, result in zip(reference["source_images"], results, strict=True):
        expected = torch.tensor(reference["predictions"][mode][name], dtype=torch.float32).reshape(-1, 6)
        got = result.boxes.data
        assert got.shape == expected.shape, f"{name}: {got.shape[0]} boxes, reference has {expected.shape[0]}"
        assert sorted(got[:, 5].tolist()) == sorted(expected[:, 5].tolist())
        paired = match_rows(expected, got)
        assert (paired[:, :4] - expected[:, :4]).abs().max() <= 0.5, name
        assert (paired[:, 4] - expected[:, 4]).abs().max() <= 1e-3, name
        assert torch.equal(paired[:, 5], expected[:, 5])
