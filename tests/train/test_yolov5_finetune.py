"""The trainer on YOLOv5 models: the YOLOv5 loss is picked, the loss falls, pretrained weights transfer with a new
class list (box/objectness rows of every anchor kept, class rows matched by name), freezing works."""

from __future__ import annotations

import csv

import pytest
import torch

from train.train_helpers import interrupted_after_epoch, tiny_data, train_tiny
from yolokit.models.builder import build_model
from yolokit.train.transfer import class_head_keys, prepare_for_training

# Five stride-2 convs and a C3 (strides 8/16/32 at layers 2, 3, 5) and the anchor head; imgsz 64.
TINY_V5 = {"nc": 3, "depth_multiple": 1.0, "width_multiple": 1.0,
           "anchors": [[6, 6, 12, 8, 8, 12], [16, 16, 24, 14, 14, 24], [32, 32, 48, 28, 28, 48]],
           "backbone": [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [16, 3, 2]],
                        [-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [16, 3, 2]], [-1, 1, "C3", [16]]],
           "head": [[[2, 3, 5], 1, "Detect", ["nc", "anchors"]]]}


# One torch thread for every test and module fixture here (the shared training runs included).
pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("data"), n_train=16, n_val=4)


def _rows(run) -> list[dict[str, float]]:
    with open(run / "results.csv", newline="") as handle:
        return [{k.strip(): float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_training_a_yolov5_model_lowers_its_loss(data, tmp_path) -> None:
    best, metrics = train_tiny(data, tmp_path, "v5", spec=TINY_V5, epochs=12, lr0=0.01, optimizer="AdamW",
                               mosaic=0.0, warmup_epochs=0, nbs=4, val=False)
    rows = _rows(tmp_path / "v5")
    assert {"train/box_loss", "train/obj_loss", "train/cls_loss"} <= set(rows[0])
    total = [r["train/box_loss"] + r["train/obj_loss"] + r["train/cls_loss"] for r in rows]
    assert sum(total[-3:]) / 3 < 0.96 * total[0], total  # a tiny model on augmented images: a slow, steady fall
    assert type(best).__name__ == "YOLOv5Model" and metrics["epochs"] == 12
    assert best.metadata["spec"]["anchors"] == TINY_V5["anchors"]


def test_transfer_keeps_box_rows_and_matches_classes_by_name() -> None:
    torch.manual_seed(0)
    source = build_model(TINY_V5)
    source.names = {0: "cat", 1: "dog", 2: "bird"}
    model, result = prepare_for_training(source, {0: "dog", 1: "fox"})
    assert result.class_map == {0: 1} and model.nc == 2
    keys = [k for pair in class_head_keys(model) for k in pair]
    assert keys[0] == "model.6.m.0.weight" and len(keys) == 6 and set(keys) <= set(result.partial)
    old, new = source.state_dict(), model.state_dict()
    for key in keys:
        for a in range(3):  # 3 anchors: rows a * (5 + nc) + k
            torch.testing.assert_close(new[key][a * 7: a * 7 + 5], old[key][a * 8: a * 8 + 5])  # box + obj
            torch.testing.assert_close(new[key][a * 7 + 5], old[key][a * 8 + 6])  # dog
    assert torch.equal(new["model.6.anchors"], old["model.6.anchors"])


@pytest.mark.slow
def test_fine_tune_from_a_yolov5_checkpoint_with_freeze(data, tmp_path) -> None:
    torch.manual_seed(1)
    source = build_model(TINY_V5)
    source.names = {0: "rectangle", 1: "ellipse", 2: "triangle"}
    from yolokit.weights import save_weights

    weights = save_weights(source, tmp_path / "v5.safetensors")
    best, _ = train_tiny(data, tmp_path, "ft", spec=TINY_V5, epochs=2, pretrained=str(weights), freeze=2)
    assert best.metadata["parent_sha256"] is not None
    first = best.state_dict()["model.0.conv.weight"]
    assert torch.equal(first, source.state_dict()["model.0.conv.weight"])  # frozen layer 0 kept its weights
    from yolokit.train.transfer import model_builder

    rebuilt = model_builder(best.metadata["spec"])(best.metadata["spec"], num_classes=3)  # what a resume builds
    assert type(rebuilt).__name__ == "YOLOv5Model" and rebuilt.state_dict().keys() == best.state_dict().keys()


@pytest.mark.slow
def test_an_interrupted_yolov5_run_resumes_to_identical_weights(data, tmp_path) -> None:
    from yolokit.config import make_config
    from yolokit.train.api import train
    from yolokit.train.config import TrainConfig
    from yolokit.weights import read_weights

    common = {"spec": TINY_V5, "epochs": 2, "mosaic": 0.0, "val": False}
    train_tiny(data, tmp_path, "full", **common)
    with interrupted_after_epoch(0):
        train_tiny(data, tmp_path, "cut", **common)
    best, summary = train(None, make_config(TrainConfig, resume=str(tmp_path / "cut"), workers=0))
    assert summary["epochs"] == 2 and type(best).__name__ == "YOLOv5Model"
    full = read_weights(tmp_path / "full" / "weights" / "last.safetensors").state_dict
    resumed = read_weights(tmp_path / "cut" / "weights" / "last.safetensors").state_dict
    assert full.keys() == resumed.keys() and all(torch.equal(full[k], resumed[k]) for k in full)
    assert _rows(tmp_path / "full")[-1]["train/obj_loss"] == _rows(tmp_path / "cut")[-1]["train/obj_loss"]
