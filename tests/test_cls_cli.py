"""The classification CLI: yolokit classify MODE, the task read from the weights, data synth --task classify, and
the ONNX graph's top-1 parity."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from yolokit import YOLO
from yolokit.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
CHECKPOINT = FIXTURES / "cls" / "yolo11-cls-tiny-random.pt"
IMAGES = [FIXTURES / "cls" / "wide.jpg", FIXTURES / "cls" / "tall.jpg", FIXTURES / "images" / "00000.jpg"]


def test_info_of_a_cls_spec_prints_the_reference_counts(capsys):
    assert main(["classify", "info", "model=yolo11n-cls.yaml"]) == 0
    assert "YOLO11n-cls summary: 86 layers, 2,812,104 parameters, 2,812,104 gradients" in capsys.readouterr().out


def test_predict_with_and_without_the_task_word(tmp_path, capsys):
    for words, name in ((["classify", "predict"], "a"), (["predict"], "b")):  # the task comes from the weights
        argv = [*words, f"model={CHECKPOINT}", f"source={IMAGES[0]}", f"project={tmp_path}", f"name={name}",
                "save_txt=True"]
        assert main(argv) == 0
        assert (tmp_path / name / "wide.jpg").is_file() and (tmp_path / name / "labels" / "wide.txt").is_file()
    out = capsys.readouterr().out
    assert "image 1/1" in out and "triangle" in out


def test_the_task_word_must_match_the_weights(capsys):
    assert main(["detect", "predict", f"model={CHECKPOINT}", f"source={IMAGES[0]}"]) == 2
    assert "task='detect' was asked for" in capsys.readouterr().err


def test_val_on_a_class_folder_dataset(tmp_path, capsys):
    for name, image in (("ellipse", IMAGES[1]), ("triangle", IMAGES[0])):
        for split in ("train", "val"):
            (tmp_path / "d" / split / name).mkdir(parents=True)
            shutil.copy(image, tmp_path / "d" / split / name / image.name)
    (tmp_path / "d" / "train" / "rectangle").mkdir()
    shutil.copy(IMAGES[2], tmp_path / "d" / "train" / "rectangle" / "x.jpg")
    assert main(["classify", "val", f"model={CHECKPOINT}", f"data={tmp_path / 'd'}", f"project={tmp_path}",
                 "name=v", "plots=False"]) == 0
    out = capsys.readouterr().out
    assert "top1_acc" in out and (tmp_path / "v" / "metrics.json").is_file()


def test_data_synth_classify(tmp_path, capsys):
    out = tmp_path / "shapes"
    assert main(["data", "synth", str(out), "--task", "classify", "--train", "10", "--val", "5", "--imgsz", "32"]) == 0
    assert "Synthetic classification dataset written" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "train").iterdir()) == ["cross", "ellipse", "rectangle", "star", "triangle"]
    assert len(list((out / "val").rglob("*.jpg"))) == 5 and (out / "data.yaml").is_file()


def test_onnx_export_keeps_the_top1(tmp_path, capsys):
    onnx_path = tmp_path / "cls.onnx"
    assert main(["classify", "export", f"model={CHECKPOINT}", f"file={onnx_path}", "imgsz=64"]) == 0
    assert "(within tolerance)" in capsys.readouterr().out  # the export's own parity check of the probabilities
    exported = YOLO(onnx_path)
    assert exported.task == "classify" and exported.names == YOLO(CHECKPOINT).names
    assert exported.metadata["classify_transforms"]["crop"] == 64 and exported.metadata["imgsz"] == [64, 64]
    sources = [str(p) for p in IMAGES]
    onnx_probs = np.stack([r.probs.data.numpy() for r in exported.predict(sources, verbose=False)])
    torch_probs = np.stack([r.probs.data.numpy() for r in YOLO(CHECKPOINT).predict(sources, engine="eager",
                                                                                      verbose=False)])
    assert onnx_probs.argmax(1).tolist() == torch_probs.argmax(1).tolist()
    assert np.abs(onnx_probs - torch_probs).max() < 1e-4
    reference = np.load(FIXTURES / "cls" / "yolo11-cls-tiny-random-io.npz")["image_probs"]
    assert np.abs(onnx_probs - reference).max() < 1e-4


@pytest.mark.parametrize("argv,message", [
    (["classify", "predict", f"model={CHECKPOINT}", f"source={IMAGES[0]}", "nms=False"], "classifier has no NMS"),
    (["classify", "val", f"model={CHECKPOINT}"], "classification dataset shapes-cls not found"),  # its train data
])
def test_classifier_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


CLS_ARTEFACTS = ("args.yaml", "results.csv", "results.png", "labels.png", "train_batch0.jpg", "confusion_matrix.png",
                 "confusion_matrix_normalized.png", "val_batch0_labels.jpg", "val_batch0_pred.jpg", "metrics.json",
                 "weights/last.safetensors", "weights/best.safetensors", "weights/last_state.pt")
TINY_CLS_SPEC = {"nc": 5, "scales": {"n": [1.0, 1.0, 1024]},
                 "backbone": [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [16, 3, 2]], [-1, 1, "C2f", [16, True]],
                              [-1, 1, "Conv", [16, 3, 2]]], "head": [[-1, 1, "Classify", ["nc"]]]}


@pytest.mark.slow
def test_cli_classify_train_writes_the_training_outputs_resumes_and_feeds_the_other_modes(tmp_path, capsys):
    """``yolokit classify train`` on the synthetic set: the artefacts detection training writes, resume through
    ``yolokit train resume=`` (no task word: the saved state says classify), then val / export / predict of the
    best weights with no task word (the task comes from the weights)."""
    import torch
    import yaml

    from yolokit.data.classify_synth import make_synthetic_classification
    from yolokit.train.checkpoint import load_state, save_state

    torch.set_num_threads(1)
    shapes = make_synthetic_classification(tmp_path / "shapes", n_train=15, n_val=5, imgsz=40)
    spec = tmp_path / "tiny-cls.yaml"
    spec.write_text(yaml.safe_dump(TINY_CLS_SPEC))
    assert main(["classify", "train", f"model={spec}", f"data={shapes}", "epochs=1", "imgsz=32", "batch=8",
                 "workers=0", "warmup_epochs=0", f"project={tmp_path}", "name=run"]) == 0, capsys.readouterr().err
    run = tmp_path / "run"
    assert [name for name in CLS_ARTEFACTS if not (run / name).is_file()] == []
    assert "metrics/accuracy_top1" in (run / "results.csv").read_text().splitlines()[0]
    state_path = run / "weights" / "last_state.pt"  # the finished 1-epoch run made an unfinished 2-epoch one
    state = load_state(state_path)
    state["config"]["epochs"], state["finished"] = 2, False
    save_state(state_path, state)
    assert main(["train", f"resume={run}"]) == 0, capsys.readouterr().err
    assert len((run / "results.csv").read_text().splitlines()) == 3 and load_state(state_path)["epoch"] == 1
    best = run / "weights" / "best.safetensors"
    capsys.readouterr()
    assert main(["val", f"model={best}", f"data={shapes}", f"project={tmp_path}", "name=v", "plots=False"]) == 0
    assert "top1_acc" in capsys.readouterr().out
    assert main(["export", f"model={best}", f"file={tmp_path / 'best.onnx'}"]) == 0
    assert YOLO(tmp_path / "best.onnx").task == "classify"
    assert main(["predict", f"model={tmp_path / 'best.onnx'}", f"source={IMAGES[0]}", f"project={tmp_path}",
                 "name=p", "save_txt=True"]) == 0
    lines = (tmp_path / "p" / "labels" / "wide.txt").read_text().splitlines()
    assert len(lines) == 5 and lines[0].split()[1] in {"cross", "ellipse", "rectangle", "star", "triangle"}
