"""``yolokit train`` and ``YOLO.train``: every artefact written, the same strict keys, resume from the CLI, and the
facade holding the best weights afterwards."""

from __future__ import annotations

import pytest
import torch
import yaml

from train.train_helpers import TINY_V8, tiny_data
from yolokit.cli import main
from yolokit.model import YOLO
from yolokit.train.checkpoint import load_state, save_state
from yolokit.weights import read_weights

ARTEFACTS = ("args.yaml", "results.csv", "results.png", "labels.png", "train_batch0.jpg", "PR_curve.png",
             "F1_curve.png", "confusion_matrix.png", "val_batch0_labels.jpg", "val_batch0_pred.jpg", "metrics.json",
             "weights/last.safetensors", "weights/best.safetensors", "weights/last_state.pt")
SMALL = ("imgsz=64", "batch=4", "nbs=8", "workers=0", "warmup_epochs=1")


# One torch thread for every test and module fixture here (the shared training runs included).
pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(scope="module")
def spec_and_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    spec = root / "tiny.yaml"
    spec.write_text(yaml.safe_dump({k: v for k, v in TINY_V8.items() if k != "scale"}))
    return spec, tiny_data(root / "data", n_train=8, n_val=4)


def test_cli_train_writes_every_artefact_and_resumes(spec_and_data, tmp_path, capsys):
    spec, data = spec_and_data
    code = main(["train", f"model={spec}", f"data={data}", "epochs=1", f"project={tmp_path}", *SMALL])
    out = capsys.readouterr()
    assert code == 0, out.err
    run = tmp_path / "train"
    missing = [name for name in ARTEFACTS if not (run / name).is_file()]
    assert not missing
    assert "mAP50-95" in out.out and "optimizer=auto chose AdamW" in out.out
    # Make the finished 1-epoch run an unfinished 2-epoch one, then resume it from the command line.
    state_path = run / "weights" / "last_state.pt"
    state = load_state(state_path)
    state["config"]["epochs"], state["finished"] = 2, False
    save_state(state_path, state)
    assert main(["train", f"resume={run}"]) == 0, capsys.readouterr().err
    assert len((run / "results.csv").read_text().splitlines()) == 3  # header + epochs 1 and 2
    assert load_state(state_path)["finished"] and load_state(state_path)["epoch"] == 1


def test_cli_train_keys_are_strict(spec_and_data, capsys):
    spec, data = spec_and_data
    assert main(["train", f"model={spec}", f"data={data}", "epochz=3"]) == 2
    assert "did you mean 'epochs'" in capsys.readouterr().err
    assert main(["train", f"model={spec}", f"data={data}", "lr0=-1"]) == 2
    assert "lr0 must be > 0" in capsys.readouterr().err


def test_yolo_train_returns_metrics_and_holds_the_best_weights(spec_and_data, tmp_path):
    spec, data = spec_and_data
    model = YOLO(str(spec))
    metrics = model.train(data=str(data), epochs=1, project=str(tmp_path), plots=False, verbose=False,
                          **dict(word.split("=") for word in SMALL))
    best = tmp_path / "train" / "weights" / "best.safetensors"
    assert metrics["save_dir"] == str(tmp_path / "train") and 0.0 <= metrics["map"] <= 1.0
    assert model.ckpt_path == best and model.names == {0: "rectangle", 1: "ellipse", 2: "triangle"}
    saved = read_weights(best).state_dict
    assert all(torch.equal(model.model.state_dict()[k], v) for k, v in saved.items())
    assert model.metadata["provenance"]["train_args"]["epochs"] == 1
