"""Whole training runs of a tiny model: artefacts, metadata, determinism, early stopping, freezing, resume errors."""

from __future__ import annotations

import csv
import logging
import shutil

import pytest
import torch
import yaml

from train.train_helpers import TINY_E2E, assert_same_tensors, run_tensors, tiny_data, tiny_model, train_tiny
from yolokit.config import make_config
from yolokit.errors import ConfigError
from yolokit.train.api import train
from yolokit.train.checkpoint import dataset_fingerprint, load_state, save_state
from yolokit.train.config import TrainConfig
from yolokit.utils.io import sha256_file
from yolokit.weights import load_weights, read_weights, save_weights

# One torch thread for every test and module fixture here (the shared training runs included).
pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def base(data, tmp_path_factory):
    """One 2-epoch run with plots and save_period=1 (shared by the artefact, metadata and determinism tests)."""
    project = tmp_path_factory.mktemp("runs")
    best, metrics = train_tiny(data, project, "train", epochs=2, plots=True, save_period=1)
    return project, best, metrics


def _rows(run_dir):
    with open(run_dir / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_run_writes_every_artefact(base):
    project, _, _ = base
    run = project / "train"
    for name in ("args.yaml", "results.csv", "results.png", "labels.png", "train_batch0.jpg", "train_batch1.jpg",
                 "PR_curve.png", "confusion_matrix.png", "val_batch0_pred.jpg", "weights/last.safetensors",
                 "weights/best.safetensors", "weights/epoch1.safetensors", "weights/epoch2.safetensors",
                 "weights/last_state.pt"):
        assert (run / name).is_file(), name
    rows = _rows(run)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"train/box_loss", "train/cls_loss", "train/dfl_loss", "metrics/mAP50-95(B)", "lr/pg0"} <= set(rows[0])
    assert yaml.safe_load((run / "args.yaml").read_text())["epochs"] == 2
    state = torch.load(run / "weights" / "last_state.pt", weights_only=True)  # plain types only
    assert state["finished"] and state["epoch"] == 1 and state["config"]["epochs"] == 2


def test_weights_metadata_and_the_returned_model(base, data):
    project, best, metrics = base
    weights = read_weights(project / "train" / "weights" / "best.safetensors")
    meta = weights.metadata
    assert meta["parent_sha256"] is None  # trained from random weights
    prov = meta["provenance"]
    assert prov["train_args"]["epochs"] == 2 and prov["train_args"]["data"] == str(data)
    assert set(prov["metrics"]) == {"precision", "recall", "map50", "map", "fitness"}
    from yolokit.data.dataset import DetectionDataset, load_data_config

    labels = DetectionDataset(load_data_config(data), "train", progress=False).labels
    assert prov["dataset_fingerprint"] == dataset_fingerprint(labels, load_data_config(data).root)
    assert best.names == {0: "rectangle", 1: "ellipse", 2: "triangle"}
    assert all(torch.equal(best.state_dict()[k], v) for k, v in weights.state_dict.items())
    assert set(metrics) == {"precision", "recall", "map50", "map", "fitness", "best_epoch", "epochs", "save_dir",
                            "weights"}
    assert metrics["epochs"] == 2 and metrics["save_dir"] == str(project / "train")


def test_same_seed_same_run_and_the_weights_did_train(base, data):
    project, _, _ = base
    train_tiny(data, project, "again", epochs=2, plots=False, save_period=1)  # plots must not change the run
    assert_same_tensors(run_tensors(project / "train"), run_tensors(project / "again"))
    strip = [{k: v for k, v in row.items() if k != "time"} for row in _rows(project / "train")]
    assert strip == [{k: v for k, v in row.items() if k != "time"} for row in _rows(project / "again")]
    torch.manual_seed(0)
    start = tiny_model().state_dict()  # train() initialises a spec-built model with seed 0 the same way
    last = read_weights(project / "train" / "weights" / "last.safetensors").state_dict
    assert not torch.equal(start["model.0.conv.weight"], last["model.0.conv.weight"])


def test_deterministic_mode_is_restored_after_the_run(base):
    assert not torch.are_deterministic_algorithms_enabled()


def test_resume_refuses_changed_settings_and_finished_runs(base):
    project, _, _ = base
    with pytest.raises(ConfigError, match="resume continues a run with its own settings, but epochs=5"):
        state = load_state(project / "train" / "weights" / "last_state.pt")
        unfinished = project / "unfinished"
        shutil.copytree(project / "train", unfinished)
        save_state(unfinished / "weights" / "last_state.pt", {**state, "finished": False})
        train(tiny_model(), make_config(TrainConfig, resume=str(unfinished), epochs=5))
    with pytest.raises(ConfigError, match="finished .*nothing to resume"):
        train(tiny_model(), make_config(TrainConfig, resume=str(project / "train")))


def test_early_stop_freeze_parent_sha_and_numbered_run_dirs(base, data, tmp_path):
    project, _, _ = base
    parent = save_weights(tiny_model(), tmp_path / "parent.safetensors")
    model = load_weights(parent)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = make_config(TrainConfig, data=str(data), project=str(project), epochs=3, patience=1, freeze=2,
                      imgsz=64, batch=4, nbs=8, workers=0, verbose=False, plots=False)
    best, metrics = train(model, cfg, parent=parent)
    run = project / "train2"  # project/train exists: the next free number
    # The tiny model's fitness stays 0: epoch 1 is the best, epoch 2 brings no better one -> stop after epoch 2.
    assert metrics["epochs"] == 2 and metrics["best_epoch"] == 1 and len(_rows(run)) == 2
    assert metrics["save_dir"] == str(run)
    last = read_weights(run / "weights" / "last.safetensors")
    assert last.metadata["parent_sha256"] == sha256_file(parent)
    for key in ("model.0.conv.weight", "model.1.bn.weight", "model.1.bn.running_mean"):  # frozen, BN held in eval
        assert torch.allclose(last.state_dict[key], start[key], rtol=1e-6, atol=1e-7), key
    assert not torch.allclose(last.state_dict["model.2.conv.weight"], start["model.2.conv.weight"])


def test_pretrained_path_transfers_into_the_spec(data, tmp_path, caplog):
    source = tiny_model(TINY_E2E)
    source.names = {0: "triangle", 1: "square", 2: "rectangle"}  # two classes shared with the dataset, elsewhere
    path = save_weights(source, tmp_path / "pretrained.safetensors")
    with caplog.at_level(logging.INFO, logger="yolokit.train.transfer"):
        _, metrics = train_tiny(data, tmp_path, "ft", spec=TINY_E2E, epochs=1, pretrained=str(path))
    assert "Transferred" in caplog.text and "triangle (0 -> 2)" in caplog.text
    meta = read_weights(tmp_path / "ft" / "weights" / "last.safetensors").metadata
    assert meta["parent_sha256"] == sha256_file(path) and meta["provenance"]["parent"] == str(path)
    assert meta["names"] == {0: "rectangle", 1: "ellipse", 2: "triangle"} and metrics["epochs"] == 1


def test_train_needs_data():
    with pytest.raises(ConfigError, match="train needs a dataset"):
        train(tiny_model(), TrainConfig())


@pytest.mark.slow
def test_loader_workers_do_not_change_the_run(base, data):
    project, _, _ = base
    train_tiny(data, project, "workers2", epochs=2, plots=False, save_period=1, workers=2)
    assert_same_tensors(run_tensors(project / "train"), run_tensors(project / "workers2"))
