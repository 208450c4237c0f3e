"""Classification validation: the evaluator on hand-made cases, and validate_classifier end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from yolokit import YOLO
from yolokit.errors import DatasetError
from yolokit.eval.classify_metrics import ClassifyEvaluator

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CHECKPOINT = FIXTURES / "cls" / "yolo11-cls-tiny-random.pt"


def test_evaluator_worked_example():
    evaluator = ClassifyEvaluator({0: "a", 1: "b", 2: "c"})
    evaluator.update(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]), torch.tensor([0, 1]))
    metrics = evaluator.compute()
    assert (metrics.top1, metrics.top5, metrics.num_images) == (0.5, 1.0, 2)
    assert metrics.per_class_accuracy == {0: 1.0, 1: 0.0, 2: None}
    assert metrics.confusion.tolist() == [[1, 0, 0], [0, 0, 0], [0, 1, 0]]  # rows predicted, columns true
    assert metrics.fitness == 0.75


def test_top5_counts_the_five_best_of_many_classes():
    names = {i: str(i) for i in range(8)}
    scores = torch.arange(8.0).repeat(4, 1)  # ranking 7, 6, 5, 4, 3, then 2, 1, 0
    evaluator = ClassifyEvaluator(names)
    evaluator.update(scores, torch.tensor([7, 3, 2, 0]))
    metrics = evaluator.compute()
    assert metrics.top1 == 0.25 and metrics.top5 == 0.5
    evaluator.reset()
    assert evaluator.compute().num_images == 0
    with pytest.raises(ValueError, match=r"expected scores \(B, 8\)"):
        evaluator.update(torch.zeros(2, 3), torch.zeros(2))


def make_dataset(root: Path, layout: dict[str, list[Path]]) -> Path:
    for name in ("ellipse", "rectangle", "triangle"):
        (root / "train" / name).mkdir(parents=True)
        shutil.copy(FIXTURES / "cls" / "wide.jpg", root / "train" / name / "t.jpg")
    for name, files in layout.items():
        (root / "val" / name).mkdir(parents=True, exist_ok=True)
        for k, file in enumerate(files):
            shutil.copy(file, root / "val" / name / f"{k}{file.suffix}")
    return root


def test_validate_end_to_end_with_reference_predictions(tmp_path):
    # the reference's top-1 on these images is class 2 (triangle) for all three (fixture image_probs)
    ref = np.load(FIXTURES / "cls" / "yolo11-cls-tiny-random-io.npz")["image_probs"]
    assert ref.argmax(1).tolist() == [2, 2, 2]
    root = make_dataset(tmp_path / "d", {"ellipse": [FIXTURES / "cls" / "tall.jpg"],
                                        "triangle": [FIXTURES / "cls" / "wide.jpg", FIXTURES / "images" / "00000.jpg"]})
    metrics = YOLO(CHECKPOINT).val(data=str(root), project=str(tmp_path), name="v", batch=2, workers=2)
    assert metrics.top1 == pytest.approx(2 / 3) and metrics.top5 == 1.0
    assert metrics.per_class_accuracy == {0: 0.0, 1: None, 2: 1.0}
    assert metrics.confusion.tolist() == [[0, 0, 0], [0, 0, 0], [1, 0, 2]]
    run = tmp_path / "v"
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["metrics"]["top1"] == pytest.approx(2 / 3) and saved["split"] == "val"
    for name in ("confusion_matrix.png", "confusion_matrix_normalized.png", "val_batch0_labels.jpg",
                 "val_batch0_pred.jpg", "val_batch1_pred.jpg"):
        assert (run / name).stat().st_size > 0


def test_validate_refuses_other_class_counts_and_missing_splits(tmp_path):
    root = tmp_path / "two"
    for name in ("x", "y"):
        (root / "train" / name).mkdir(parents=True)
        shutil.copy(FIXTURES / "cls" / "wide.jpg", root / "train" / name / "a.jpg")
    model = YOLO(CHECKPOINT)
    with pytest.raises(DatasetError, match="has 2 classes but the model predicts 3"):
        model.val(data=str(root), split="train", plots=False, project=str(tmp_path))
    with pytest.raises(DatasetError, match="no 'val' split"):
        model.val(data=str(root), plots=False, project=str(tmp_path))
