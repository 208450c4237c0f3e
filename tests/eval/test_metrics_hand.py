"""Hand-computed AP, precision/recall/F1, confusion matrix and table/JSON output of DetectionEvaluator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from yolokit.eval.evaluator import DetectionEvaluator, confusion_update
from yolokit.eval.metrics import coco_box_iou, confidence_curves, smooth

NAMES = {0: "rectangle", 1: "ellipse", 2: "triangle"}


def target(boxes: list[list[float]], cls: list[int]) -> dict[str, np.ndarray]:
    return {"boxes_xyxy": np.array(boxes, dtype=np.float64).reshape(-1, 4), "cls": np.array(cls)}


def evaluate(preds: list[list[list[float]]], targets: list[dict]) -> object:
    evaluator = DetectionEvaluator(NAMES)
    evaluator.update([np.array(p, dtype=np.float64).reshape(-1, 6) for p in preds], targets)
    return evaluator.compute()


def test_coco_iou_has_no_plus_one_and_crowd_uses_detection_area() -> None:
    assert coco_box_iou([[0, 0, 10, 10]], [[5, 0, 10, 10]])[0, 0] == pytest.approx(1 / 3)
    assert coco_box_iou([[0, 0, 10, 10]], [[5, 0, 10, 10]], np.array([True]))[0, 0] == pytest.approx(0.5)
    assert coco_box_iou([[0, 0, 10, 10]], [[10, 0, 10, 10]])[0, 0] == 0.0  # touching boxes


def test_one_perfect_detection_gives_ap_one() -> None:
    metrics = evaluate([[[10, 10, 50, 40, 0.9, 0]]], [target([[10, 10, 50, 40]], [0])])
    assert metrics.map == pytest.approx(1.0) and metrics.map50 == pytest.approx(1.0)
    assert metrics.map75 == pytest.approx(1.0)
    assert metrics.map_medium == pytest.approx(1.0)  # area 1200 is medium
    assert metrics.map_small == -1.0 and metrics.map_large == -1.0  # no GT there: undefined, like COCO
    assert metrics.per_class[0]["map"] == pytest.approx(1.0)
    assert metrics.per_class[1]["map"] is None  # no GT for class 1


def test_false_positive_above_true_positive_halves_ap() -> None:
    # sorted: FP (0.9) then TP (0.8): precision at every recall level is 1/2 -> AP 0.5 at every IoU threshold
    metrics = evaluate([[[200, 200, 240, 240, 0.9, 0], [10, 10, 50, 40, 0.8, 0]]], [target([[10, 10, 50, 40]], [0])])
    assert metrics.map == pytest.approx(0.5) and metrics.map50 == pytest.approx(0.5)


def test_half_recall_gives_51_of_101_recall_points() -> None:
    metrics = evaluate([[[10, 10, 50, 40, 0.9, 0]]], [target([[10, 10, 50, 40], [100, 100, 150, 160]], [0, 0])])
    assert metrics.map50 == pytest.approx(51 / 101)


def test_no_predictions_gives_zero_and_empty_evaluator_gives_undefined() -> None:
    metrics = evaluate([[]], [target([[10, 10, 50, 40]], [0])])
    assert metrics.map == 0.0 and metrics.map50 == 0.0 and metrics.precision == 0.0 and metrics.recall == 0.0
    empty = DetectionEvaluator(NAMES).compute()
    assert empty.map == -1.0 and empty.num_images == 0


def test_wrong_class_is_not_a_match() -> None:
    metrics = evaluate([[[10, 10, 50, 40, 0.9, 1]]], [target([[10, 10, 50, 40]], [0])])
    assert metrics.map == 0.0


def test_precision_recall_f1_at_best_confidence() -> None:
    """4 GT; detections by score: TP .9, TP .8, FP .7, TP .6, FP .3. Best F1 0.75 for confidence in (0.3, 0.6]."""
    gt = [[0, 0, 40, 40], [100, 0, 140, 40], [200, 0, 240, 40], [300, 0, 340, 40]]
    preds = [[0, 0, 40, 40, 0.9, 0], [100, 0, 140, 40, 0.8, 0], [0, 200, 40, 240, 0.7, 0],
             [200, 0, 240, 40, 0.6, 0], [100, 200, 140, 240, 0.3, 0]]
    metrics = evaluate([preds], [target(gt, [0, 0, 0, 0])])
    assert 0.3 < metrics.conf_threshold <= 0.6
    assert metrics.precision == pytest.approx(0.75) and metrics.recall == pytest.approx(0.75)
    assert metrics.f1 == pytest.approx(0.75)
    row = metrics.per_class[0]
    assert (row["precision"], row["recall"], row["images"], row["instances"]) == (pytest.approx(0.75),
                                                                                pytest.approx(0.75), 1, 4)


def test_confidence_curves_step_values() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.3])
    is_tp = np.array([True, True, False, True, False])
    grid = np.array([0.0, 0.3, 0.5, 0.65, 0.75, 0.85, 0.95])
    precision, recall = confidence_curves(scores, is_tp, 4, grid)
    np.testing.assert_allclose(precision, [3 / 5, 3 / 5, 3 / 4, 2 / 3, 1, 1, 1])
    np.testing.assert_allclose(recall, [3 / 4, 3 / 4, 3 / 4, 2 / 4, 2 / 4, 1 / 4, 0])
    np.testing.assert_allclose(smooth(np.ones(50)), np.ones(50))


def test_confusion_matrix_counts() -> None:
    """Rows = predicted class, columns = true class, index 2 = background; conf > 0.25 and IoU > 0.45."""
    matrix = np.zeros((3, 3), dtype=np.int64)
    gt_boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], dtype=np.float64)
    gt_cls = np.array([0, 1, 1])
    pred = np.array([
        [0, 0, 10, 10, 0.9, 1],  # on a class-0 object, predicted as 1
        [20, 20, 30, 30, 0.8, 1],  # correct
        [20, 20, 30, 30, 0.6, 1],  # duplicate: unpaired detection
        [80, 80, 90, 90, 0.7, 0],  # background false positive
        [50, 50, 60, 60, 0.1, 1],  # below conf: the third object counts as missed
    ])
    confusion_update(matrix, pred, gt_boxes, gt_cls)
    np.testing.assert_array_equal(matrix, [[0, 0, 1], [1, 1, 1], [0, 1, 0]])


def test_metrics_outputs_table_json_and_tensors(tmp_path) -> None:
    evaluator = DetectionEvaluator(NAMES)
    pred = torch.tensor([[10, 10, 50, 40, 0.9, 0], [60, 60, 90, 90, 0.8, 2]], dtype=torch.float32)
    evaluator.update([pred], [{"boxes_xyxy": torch.tensor([[10.0, 10, 50, 40]]), "cls": torch.tensor([0])}])
    with pytest.raises(ValueError, match="already evaluated"):
        evaluator.update([pred], [target([], [])], image_ids=[0])
    metrics = evaluator.compute()
    lines = metrics.format_table().splitlines()
    assert lines[0].split() == ["Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95"]
    assert lines[1].split()[:3] == ["all", "1", "1"] and lines[2].split()[:3] == ["rectangle", "1", "1"]
    assert len(lines) == 3 and len({len(line) for line in lines}) == 1  # aligned; classes without GT left out
    saved = json.loads(metrics.save_json(tmp_path / "m.json", extra={"split": "val"}).read_text())
    assert saved["metrics"]["map50"] == pytest.approx(1.0) and saved["split"] == "val"
    assert saved["confusion_matrix"][0][0] == 1 and saved["confusion_matrix"][2][3] == 1
    assert metrics.fitness == metrics.map
    evaluator.reset()
    assert evaluator.compute().num_images == 0


def test_bad_class_id_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"class ids must be in \[0, 3\)"):
        evaluate([[[0, 0, 5, 5, 0.5, 7]]], [target([], [])])
