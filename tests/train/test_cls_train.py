"""Classification training on the shared trainer: loss, class weights, settings, transfer, and whole runs."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from train.train_helpers import interrupted_after_epoch
from yolokit.config import make_config
from yolokit.errors import ConfigError
from yolokit.models.builder import build_model
from yolokit.models.classifier import build_classifier
from yolokit.tasks import get_task
from yolokit.train.classify import ClassificationLoss, ClassifyTrainConfig, class_weights, train
from yolokit.train.transfer import prepare_for_training

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BACKBONE = [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [16, 3, 2]], [-1, 1, "C2f", [16, True]],
            [-1, 1, "Conv", [16, 3, 2]]]
TINY_CLS = {"nc": 5, "scales": {"n": [1.0, 1.0, 1024]}, "scale": "n", "backbone": BACKBONE,
            "head": [[-1, 1, "Classify", ["nc"]]]}
TINY_DET = {"nc": 2, "scales": {"n": [1.0, 1.0, 1024]}, "scale": "n", "backbone": BACKBONE,
            "head": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [16, 3, 2]], [[3, 4, 5], 1, "Detect", ["nc"]]]}
FAST = {"imgsz": 32, "batch": 8, "nbs": 8, "warmup_epochs": 0, "workers": 0, "verbose": False, "plots": False}


def test_class_weights_by_hand():
    weights = class_weights([0, 0, 0, 1], nc=2, power=1.0)
    assert weights.tolist() == pytest.approx([4 / 6, 2.0])  # N / (nc * n_c)
    assert class_weights([0, 0, 0, 1], nc=2, power=0.5).tolist() == pytest.approx([(4 / 6) ** 0.5, 2 ** 0.5])
    assert class_weights([0, 1], nc=3, power=1.0).tolist() == pytest.approx([2 / 3] * 3)  # empty class counts as 1
    assert class_weights([0, 1], nc=2, power=0.0) is None


def test_loss_is_cross_entropy_with_smoothing_and_weights():
    logits = torch.tensor([[2.0, 0.0], [0.5, 1.5]])
    batch = {"cls": torch.tensor([0, 1])}
    loss, items = ClassificationLoss()(logits, batch)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, batch["cls"]).item()) and items.shape == (1,)
    smoothed, _ = ClassificationLoss(label_smoothing=0.1)(logits[:1], {"cls": torch.tensor([0])})
    p = logits[0].softmax(0)
    assert smoothed.item() == pytest.approx(-(0.95 * p[0].log() + 0.05 * p[1].log()).item(), rel=1e-6)
    weighted, _ = ClassificationLoss(weight=torch.tensor([1.0, 3.0]))(logits, batch)
    per = F.cross_entropy(logits, batch["cls"], reduction="none")
    assert weighted.item() == pytest.approx(((per[0] + 3 * per[1]) / 4).item())  # divided by the targets' weights


def test_settings_defaults_and_checks():
    cfg = make_config(ClassifyTrainConfig, data="d", dropout="0.2", cls_pw="1")
    assert (cfg.imgsz, cfg.dropout, cfg.cls_pw, cfg.erasing, cfg.label_smoothing) == (224, 0.2, 1.0, 0.4, 0.0)
    assert {"data", "dropout", "cls_pw"} <= cfg.given
    with pytest.raises(ConfigError, match="dropout"):
        make_config(ClassifyTrainConfig, dropout=1.0)
    with pytest.raises(ConfigError, match="erasing"):
        make_config(ClassifyTrainConfig, erasing=2)
    entry = get_task("classify")
    assert entry.load("train_config") is ClassifyTrainConfig and entry.load("trainer") is train


def test_transfer_from_a_detector_backbone(tmp_path):
    from yolokit.weights import save_weights

    torch.manual_seed(0)
    detector = build_model(dict(TINY_DET))
    detector.names = {0: "car", 1: "dog"}
    path = save_weights(detector, tmp_path / "det.safetensors")
    model, result = prepare_for_training(path, {0: "cross", 1: "dog"}, spec=TINY_CLS)
    assert type(model).__name__ == "ClassificationModel" and model.names == {0: "cross", 1: "dog"}
    source = detector.state_dict()
    backbone = [k for k in model.state_dict() if k.split(".")[1] in "0123"]
    assert backbone and all(torch.equal(model.state_dict()[k], source[k]) for k in backbone)
    assert result.transferred == len(backbone)  # the Classify head (layer 4) has nothing to take from a detector
    assert not result.class_map  # Detect rows do not map onto a linear head


def test_transfer_from_a_cls_checkpoint_matches_head_rows_by_name():
    source = FIXTURES / "cls" / "yolo11-cls-tiny-random.pt"  # classes ellipse, rectangle, triangle
    model, result = prepare_for_training(source, {0: "triangle", 1: "ellipse"})
    from yolokit.weights import read_weights

    old = read_weights(source).state_dict
    key = "model.10.linear.weight"
    assert torch.equal(model.state_dict()[key][0], old[key][2]) and torch.equal(model.state_dict()[key][1], old[key][0])
    assert result.class_map == {0: 2, 1: 0} and result.transferred == result.total


def _cfg(data: Path, project: Path, name: str, **overrides) -> ClassifyTrainConfig:
    return make_config(ClassifyTrainConfig, {**FAST, "data": str(data), "project": str(project), "name": name,
                                             **overrides})


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    from yolokit.data.classify_synth import make_synthetic_classification

    return make_synthetic_classification(tmp_path_factory.mktemp("shapes"), n_train=20, n_val=10, imgsz=40)


@pytest.mark.slow
def test_a_run_writes_every_artefact_and_records_top1(shapes, tmp_path):
    torch.set_num_threads(1)
    best, summary = train(build_classifier(dict(TINY_CLS)), _cfg(shapes, tmp_path, "r", epochs=2, plots=True,
                                                                  dropout=0.1, cls_pw=0.5, freeze=2))
    run = tmp_path / "r"
    assert {"best_epoch", "epochs", "save_dir", "top1", "top5", "fitness"} <= set(summary)
    assert summary["fitness"] == pytest.approx((summary["top1"] + summary["top5"]) / 2)
    for name in ("args.yaml", "results.csv", "results.png", "labels.png", "train_batch0.jpg", "confusion_matrix.png",
                 "metrics.json", "weights/best.safetensors", "weights/last.safetensors", "weights/last_state.pt"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert len(rows) == 2 and {"train/loss", "metrics/accuracy_top1", "metrics/accuracy_top5"} <= set(rows[0])
    meta = best.metadata
    assert best.task == "classify" and meta["task"] == "classify" and meta["imgsz"] == 32
    assert meta["provenance"]["train_args"]["dropout"] == 0.1 and meta["provenance"]["train_args"]["freeze"] == 2
    best_row = rows[summary["best_epoch"] - 1]  # the best weights carry their own epoch's validation
    assert meta["provenance"]["metrics"]["top1"] == pytest.approx(float(best_row["metrics/accuracy_top1"]))
    assert not any(math.isnan(float(r["train/loss"])) for r in rows)


@pytest.mark.slow
def test_interrupted_run_resumes_to_identical_weights(shapes, tmp_path):
    from yolokit.weights import read_weights

    torch.set_num_threads(1)
    train(build_classifier(dict(TINY_CLS)), _cfg(shapes, tmp_path, "full", epochs=3))
    with interrupted_after_epoch(1):
        train(build_classifier(dict(TINY_CLS)), _cfg(shapes, tmp_path, "cut", epochs=3))
    from yolokit.train.api import train as shared_train
    from yolokit.train.config import TrainConfig

    # the shared entry point with detection's settings class: the saved state's task picks the classify trainer
    _, summary = shared_train(None, make_config(TrainConfig, resume=str(tmp_path / "cut"), workers=0))
    assert summary["epochs"] == 3
    full = read_weights(tmp_path / "full" / "weights" / "last.safetensors").state_dict
    resumed = read_weights(tmp_path / "cut" / "weights" / "last.safetensors").state_dict
    assert full.keys() == resumed.keys() and all(torch.equal(full[k], resumed[k]) for k in full)


@pytest.mark.slow
def test_facade_and_cli_train_a_classifier(shapes, tmp_path, capsys):
    import yaml

    from yolokit import YOLO
    from yolokit.cli import main

    torch.set_num_threads(1)
    spec = tmp_path / "tiny-cls.yaml"
    spec.write_text(yaml.safe_dump({k: v for k, v in TINY_CLS.items() if k != "scale"}))
    model = YOLO(spec)
    metrics = model.train(data=str(shapes), epochs=1, project=str(tmp_path), name="facade", **{
        k: v for k, v in FAST.items() if k != "verbose"}, verbose=False)
    assert model.task == "classify" and Path(metrics["weights"]).is_file() and "top1" in metrics
    assert model.names == {0: "cross", 1: "ellipse", 2: "rectangle", 3: "star", 4: "triangle"}
    assert len(model.predict(str(shapes / "val" / "star" / "*.jpg"), verbose=False)) == 2
    argv = ["classify", "train", f"model={spec}", f"data={shapes}", "epochs=1", "imgsz=32", "batch=8", "workers=0",
            f"project={tmp_path}", "name=cli", "plots=False", "label_smoothing=0.1"]
    assert main(argv) == 0
    assert (tmp_path / "cli" / "weights" / "best.safetensors").is_file()
    # no task word: the spec's head says classify, so a classification key is accepted
    assert main(["train", f"model={spec}", f"data={shapes}", "cls_pw=2", "epochs=1", "imgsz=32", "workers=0",
                 f"project={tmp_path}", "name=plain", "plots=False"]) == 0
    assert (tmp_path / "plain" / "results.csv").is_file()
